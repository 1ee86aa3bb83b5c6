"""Pretrain BERT from raw text: the same as `minibert pretrain` (see `minibert pretrain --help`), for running
from a checkout without installing, e.g.

    python scripts/pretrain.py --corpus wiki.json --tokenizer VOCAB_DIR --preset tiny --output-dir runs/tiny \\
        --max-seq-length 128 --dupe-factor 1 --max-minutes 10 --lr 5e-4 --warmup-ratio 0.1 --eval-every 100
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's minibert, installed or not
from minibert.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))
