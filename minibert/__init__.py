"""minibert: BERT written from scratch in plain PyTorch."""

from minibert.config import BertConfig
from minibert.errors import CheckpointError, ConfigError, DataError, InputError, MinibertError
from minibert.tokenizer import BertTokenizer

__version__ = "0.1.0"
