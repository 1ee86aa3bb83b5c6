"""Pretraining data: corpus readers, WordPiece training, example creation as the original BERT did it,
masking, and the on-disk shards a training run reads."""

from minibert.data.corpus import CorpusStats, detect_format, iter_documents, split_sentences
from minibert.data.masking import IGNORE_INDEX, Masker, mask_tokens, num_to_predict, subword_table
from minibert.data.pretraining import (PretrainingExample, PretrainingOptions, create_examples_in_memory,
                                       generate_examples)
from minibert.data.pretraining_shards import (PretrainingDataset, collate_pretraining, prepare_pretraining_data,
                                              read_meta, vocab_sha256)
from minibert.data.tokenizer_training import train_wordpiece
