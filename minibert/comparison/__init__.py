"""Did pretraining help? `compare()` fine-tunes a pretrained model, the same architecture from random
initialisation and any reference checkpoints alike, over paired seeds and a learning-rate grid, and reports the
paired margins beside a TF-IDF + logistic regression baseline (the CLI: `minibert compare`).

Reading order, the order a comparison goes:

    splits.py    test / labelled sample / validation / train, written to OUT/splits/ in the task's own format
    arms.py      pretrained, random init (one copy per seed), references; each identified by its files' hash
    runs.py      the fine-tuning runs (finetune + evaluate on the test split), reused when finished, N at a time
    stats.py     each arm's learning rate chosen on validation, mean ± sd, paired margins with a 95% t-interval
    baseline.py  TF-IDF + logistic regression on the same splits (scikit-learn, the `compare` extra)
    report.py    the table, OUT/results.json, OUT/comparison.png
    compare.py   compare(): all of the above
"""

from minibert.comparison.compare import Comparison, compare

__all__ = ["Comparison", "compare"]
