"""Pretraining (BERT §3.1): masked LM, plus next-sentence prediction, from raw text.

    pretrain(args, tokenizer, corpus=..., model=...)   (run.py; the CLI: `minibert pretrain`)

Reading order, the order a run goes:

    corpus.py          reading text: four corpus formats -> documents of sentences
    wordpiece.py       learning a WordPiece vocabulary from the corpus (`minibert train-tokenizer`)
    examples.py        documents -> sentence pairs (a real or random B), as Google's create_pretraining_data.py
    masking.py         15% of tokens chosen; 80% [MASK], 10% random, 10% unchanged (static or dynamic)
    shards.py          examples on disk, read back as a Dataset (`minibert prepare-pretraining`)
    objective.py       what the training loop asks: the MLM (+NSP) loss summed, held-out metrics
    electra.py         the other objective: replaced-token detection (ELECTRA), its model, task and metrics
    recipes.py         named settings to start from (bert: the original; cpu: minutes on a laptop)
    initialisation.py  where a model from scratch starts (BERT's init, or attention that starts local)
    run.py             pretrain(): data prepared once, the model built, minibert.training.train, final/ written
"""

from minibert.pretraining.corpus import CorpusStats, detect_format, iter_documents, split_sentences
from minibert.pretraining.masking import Masker, mask_tokens, num_to_predict, subword_table
from minibert.pretraining.examples import (PretrainingExample, PretrainingOptions, create_examples_in_memory,
                                           generate_examples)
from minibert.pretraining.shards import (PretrainingDataset, collate_pretraining, prepare_pretraining_data,
                                         read_meta, vocab_sha256)
from minibert.pretraining.wordpiece import train_wordpiece
