"""BERT's WordPiece tokenizer, through the `tokenizers` library (BERT 2018, section 3, "Input/Output
Representations": WordPiece with a 30,000-token vocabulary, [CLS] first, [SEP] after each segment)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from minibert.errors import CheckpointError
from minibert.plumbing.hub import resolve
from minibert.plumbing.atomic_files import atomic_write_text, new_folder

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class BertTokenizer:
    """Wraps a `tokenizers.Tokenizer` with BERT's specials; `backend` gives the full library object
    (offsets, word ids, overflow windows) to the tasks that need it."""

    def __init__(self, backend: Tokenizer, model_max_length: int = 512):
        self.backend = backend
        self.model_max_length = model_max_length
        for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"):
            if backend.token_to_id(token) is None:
                raise CheckpointError(f"tokenizer: vocabulary has no {token} token")
        self.pad_id = backend.token_to_id("[PAD]")
        self.unk_id = backend.token_to_id("[UNK]")
        self.cls_id = backend.token_to_id("[CLS]")
        self.sep_id = backend.token_to_id("[SEP]")
        self.mask_id = backend.token_to_id("[MASK]")
        # Settings are applied per call; the stored defaults of tokenizer.json would otherwise leak in.
        backend.no_padding()
        backend.no_truncation()

    # -- construction -----------------------------------------------------------------------------------------
    @classmethod
    def from_vocab(cls, vocab_file: str | os.PathLike, lowercase: bool = True,
                   strip_accents: bool | None = None, model_max_length: int = 512) -> "BertTokenizer":
        """Build the tokenizer Hugging Face's fast BertTokenizer builds from a `vocab.txt`."""
        vocab_file = Path(vocab_file)
        try:
            vocab = {}
            for i, line in enumerate(vocab_file.read_text(encoding="utf-8").splitlines()):
                vocab.setdefault(line.rstrip("\n"), i)
        except FileNotFoundError:
            raise CheckpointError(f"{vocab_file}: vocabulary file not found") from None
        except UnicodeDecodeError as e:
            raise CheckpointError(f"{vocab_file}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                                  f"{e.start})") from None
        if not vocab:
            raise CheckpointError(f"{vocab_file}: vocabulary file is empty")
        backend = cls.wordpiece_backend(vocab, lowercase, strip_accents)
        # "[MASK]" typed in a text is one token, not "[", "mask", "]": the special tokens are matched before the
        # normaliser and pre-tokenizer run, as transformers' fast tokenizer does when it reads a vocab.txt.
        backend.add_special_tokens([token for token in SPECIAL_TOKENS if token in vocab])
        cls.add_bert_template(backend)
        return cls(backend, model_max_length)

    @staticmethod
    def wordpiece_backend(vocab: dict[str, int] | None, lowercase: bool = True,
                          strip_accents: bool | None = None) -> Tokenizer:
        """BERT's text pipeline around a WordPiece model: the normaliser (clean control characters, space out CJK
        characters, lowercase and strip accents when `lowercase`), the pre-tokeniser (split on whitespace and
        punctuation), `##` continuation pieces. `vocab` None gives an empty model, for a trainer to fill."""
        backend = Tokenizer(WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##",
                                      max_input_chars_per_word=100))
        backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                        strip_accents=strip_accents, lowercase=lowercase)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        return backend

    @staticmethod
    def add_bert_template(backend: Tokenizer) -> None:
        cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
        if cls_id is None or sep_id is None:
            raise CheckpointError("tokenizer: vocabulary has no [CLS] or [SEP] token")
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike) -> "BertTokenizer":
        """Load from a folder (tokenizer.json, else vocab.txt + tokenizer_config.json), a file, or a hub id."""
        path = Path(name_or_path)
        if path.is_file() and path.suffix == ".json":
            return cls(_read_tokenizer_json(path))
        if path.is_file() and path.suffix == ".txt":
            return cls.from_vocab(path)
        folder = resolve(name_or_path)
        settings = {}
        if (folder / "tokenizer_config.json").is_file():
            settings = _read_settings(folder / "tokenizer_config.json")
        max_length = settings.get("model_max_length", 512)
        max_length = max_length if isinstance(max_length, int) and max_length < 1_000_000 else 512
        if (folder / "tokenizer.json").is_file():
            return cls(_read_tokenizer_json(folder / "tokenizer.json"), max_length)
        if (folder / "vocab.txt").is_file():
            lowercase = settings.get("do_lower_case", True)
            return cls.from_vocab(folder / "vocab.txt", lowercase=lowercase,
                                  strip_accents=settings.get("strip_accents"), model_max_length=max_length)
        raise CheckpointError(f"{folder}: no tokenizer.json or vocab.txt")

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write tokenizer.json, vocab.txt and tokenizer_config.json, the layout transformers reads."""
        folder = Path(folder)
        with new_folder(folder):
            self._save_files(folder)

    def _save_files(self, folder: Path) -> None:
        atomic_write_text(folder / "tokenizer.json", self.backend.to_str(pretty=True))
        vocab = sorted(self.backend.get_vocab().items(), key=lambda kv: kv[1])
        atomic_write_text(folder / "vocab.txt", "".join(token + "\n" for token, _ in vocab))
        lowercase = True
        normalizer = json.loads(self.backend.to_str()).get("normalizer") or {}
        if normalizer.get("type") == "BertNormalizer":
            lowercase = bool(normalizer.get("lowercase", True))
        config = {"tokenizer_class": "BertTokenizer", "do_lower_case": lowercase,
                  "model_max_length": self.model_max_length, "unk_token": "[UNK]", "sep_token": "[SEP]",
                  "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}
        atomic_write_text(folder / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")

    # -- vocabulary -------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def special_ids(self) -> set[int]:
        return {self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id}

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.backend.id_to_token(int(i)) for i in ids]

    # -- encoding ---------------------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of `text`, without [CLS]/[SEP]."""
        return self.backend.encode(text, add_special_tokens=False).tokens

    def encode_ids(self, text: str) -> list[int]:
        """WordPiece ids of `text`, without [CLS]/[SEP]."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def __call__(self, texts: str | Sequence[str], pairs: str | Sequence[str] | None = None, *,
                 max_length: int | None = None, padding: bool | str = True, truncation: bool = True,
                 return_tensors: bool = True) -> dict:
        """Encode texts (or text pairs) to `input_ids`, `token_type_ids` and `attention_mask`.

        padding: True pads to the longest in the batch, "max_length" to `max_length`, False not at all.
        Truncation trims the longer side of a pair first, as transformers' "longest_first" does.
        """
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if pairs is not None:
            pairs = [pairs] if isinstance(pairs, str) else list(pairs)
            if len(pairs) != len(texts):
                raise ValueError(f"tokenizer: {len(texts)} texts but {len(pairs)} pairs")
        max_length = max_length or self.model_max_length
        if truncation:
            self.backend.enable_truncation(max_length, strategy="longest_first")
        try:
            inputs = list(zip(texts, pairs)) if pairs is not None else texts
            encodings = self.backend.encode_batch(inputs)
        finally:
            self.backend.no_truncation()
        ids = [e.ids for e in encodings]
        types = [e.type_ids for e in encodings]
        if not padding:
            return {"input_ids": ids, "token_type_ids": types, "attention_mask": [[1] * len(x) for x in ids]}
        width = max_length if padding == "max_length" else max(len(x) for x in ids)
        batch = {
            "input_ids": [x + [self.pad_id] * (width - len(x)) for x in ids],
            "token_type_ids": [t + [0] * (width - len(t)) for t in types],
            "attention_mask": [[1] * len(x) + [0] * (width - len(x)) for x in ids],
        }
        if return_tensors:
            batch = {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
        return batch

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)


def _read_tokenizer_json(path: Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # the tokenizers library raises a bare Exception for a file it cannot parse
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: not a valid tokenizer.json ({reason})") from None


def _read_settings(path: Path) -> dict:
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(settings, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(settings).__name__}")
    return settings
