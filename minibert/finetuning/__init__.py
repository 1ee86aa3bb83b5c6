"""Fine-tuning (BERT §4): a pretrained encoder plus one small head, trained on a labelled task, then used to predict.

    finetune(checkpoint, task, train_data, output_dir, ...)   (run.py; the CLI: `minibert finetune`)

Reading order, the order a run goes:

    readers.py      task data: CSV/TSV/JSONL tables, GLUE TSVs, CoNLL tags, SQuAD JSON, hub datasets
    features.py     examples -> model inputs: pairs, word labels on first pieces, QA windows with their answers
    kinds.py        the task list (classification, regression, ner, qa): each task's head and label map
    objective.py    what the training loop asks of a task: each head's loss summed, and evaluation
    metrics.py      accuracy, F1, MCC, correlations, entity F1, SQuAD EM/F1 (cross-checked against references)
    qa_decoding.py  the one QA answer decoder (n-best spans, null score), for evaluation and predict alike
    run.py          finetune(): all of the above around minibert.training.train, best checkpoint kept
    predict.py      Predictor: a fine-tuned folder -> labels, tags or answers (`minibert predict`)
"""
