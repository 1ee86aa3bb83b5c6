"""Pretraining data: corpus readers, WordPiece training, example creation as the original BERT did it,
masking, and the on-disk shards a training run reads."""

from minibert.pretraining.corpus import CorpusStats, detect_format, iter_documents, split_sentences
from minibert.pretraining.masking import Masker, mask_tokens, num_to_predict, subword_table
from minibert.pretraining.examples import (PretrainingExample, PretrainingOptions, create_examples_in_memory,
                                       generate_examples)
from minibert.pretraining.shards import (PretrainingDataset, collate_pretraining, prepare_pretraining_data,
                                              read_meta, vocab_sha256)
from minibert.pretraining.wordpiece import train_wordpiece
