"""Pretraining examples on disk, in numpy files a dataset memory-maps, so a corpus larger than memory trains
without being loaded (the original wrote TFRecord files of padded examples; flat arrays skip the padding).

Layout of a prepared folder:

    meta.json                  options, counts, special ids, vocab hash, the shard list. Written last and
                               atomically: a folder without it is unfinished and is refused.
    subword.npy                bool [V], True for `##` pieces; only for dynamic whole-word masking
    shard_00000/
      input_ids.npy            uint16 (int32 if V > 65536) [tokens]: every example back to back,
                               [CLS] A [SEP] B [SEP], already masked when masking is static
      offsets.npy              int64 [n + 1]: example i is input_ids[offsets[i]:offsets[i + 1]]
      b_start.npy              int32 [n]: first position of segment B (token type 1)
      next_sentence_label.npy  int8 [n]: 0 is next, 1 random (only with NSP)
      masked_positions.npy     int32 [m]: static masking only, like the original's masked_lm_positions
      masked_ids.npy           uint16|int32 [m]: the original ids there (masked_lm_ids)
      masked_offsets.npy       int64 [n + 1]: example i's masks are masked_*[masked_offsets[i]:...[i + 1]]
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from minibert.pretraining.cooccurrence import WINDOW, cooccurrence_counts, sum_by_key
from minibert.pretraining.masking import Masker, subword_table
from minibert.pretraining.examples import (CreationCounts, PretrainingExample, PretrainingOptions,
                                           check_tokenizer, example_features, generate_examples)
from minibert.errors import DataError
from minibert.plumbing.atomic_files import atomic_write_text, remove_stale_temps, temp_name
from minibert.model import IGNORE_INDEX
from minibert.tokenizer import BertTokenizer

FORMAT = "minibert-pretraining"
VERSION = 1
SHARD_FILES = ("input_ids", "offsets", "b_start")
NSP_FILES = ("next_sentence_label",)
STATIC_MASK_FILES = ("masked_positions", "masked_ids", "masked_offsets")


def vocab_sha256(tokenizer: BertTokenizer) -> str:
    """Fingerprint of the vocabulary (tokens in id order): data prepared with one vocabulary is
    meaningless to a model trained with another."""
    vocab = sorted(tokenizer.backend.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    return hashlib.sha256("\n".join(token for token, _ in vocab).encode("utf-8")).hexdigest()


# -- writing ----------------------------------------------------------------------------------------------------
def prepare_pretraining_data(documents: Iterable[Sequence[str]], tokenizer: BertTokenizer,
                             out_dir: str | os.PathLike, options: PretrainingOptions = PretrainingOptions(), *,
                             shard_size: int = 100_000, model_vocab_size: int | None = None,
                             overwrite: bool = False) -> dict:
    """Create the examples of a corpus (see `minibert.pretraining.examples`) and write them to `out_dir` in
    shards of `shard_size` examples; returns the meta.json content. Memory holds one chunk of documents and
    one shard at a time. `overwrite` replaces an earlier preparation; other files are never touched.

    The data is written into a temporary folder beside `out_dir` and moved in only when complete, so an
    interrupted or failed preparation leaves the earlier data as it was (and its temporary folder is removed, by
    this run or, after a kill, by the next)."""
    check_tokenizer(tokenizer, model_vocab_size)
    if shard_size < 1:
        raise DataError(f"shard_size {shard_size} must be at least 1")
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise DataError(f"{out_dir}: folder is not empty; pass overwrite=True to replace its data")
    with ExitStack() as cleanup:
        tmp = build_beside(out_dir, cleanup)
        meta = write_pretraining_data(documents, tokenizer, tmp, options, shard_size)
        move_prepared(tmp, out_dir)
    return meta


def build_beside(out_dir: Path, cleanup: ExitStack) -> Path:
    """A new temporary folder beside `out_dir` to build its data in (removed when `cleanup` closes, unless moved
    in by then), after removing those that killed runs left."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir.parent, out_dir.name)
    tmp = out_dir.parent / temp_name(out_dir.name)
    cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)  # registered first: an interrupt may come any time
    os.mkdir(tmp, 0o777)
    return tmp


def write_pretraining_data(documents: Iterable[Sequence[str]], tokenizer: BertTokenizer, folder: Path,
                           options: PretrainingOptions, shard_size: int = 100_000) -> dict:
    """Write the examples into `folder` (new and empty): the shards, then meta.json."""
    counts = CreationCounts()
    token_dtype = np.uint16 if tokenizer.vocab_size <= 2 ** 16 else np.int32
    content = _content_digest(options)
    shards: list[dict] = []
    buffer: list[PretrainingExample] = []
    for example in generate_examples(documents, tokenizer, options, counts):
        buffer.append(example)
        if len(buffer) == shard_size:
            shards.append(_write_shard(folder / f"shard_{len(shards):05d}", buffer, token_dtype, options, content))
            buffer = []
    if buffer:
        shards.append(_write_shard(folder / f"shard_{len(shards):05d}", buffer, token_dtype, options, content))
    if options.dynamic_masking and options.whole_word_mask:
        np.save(folder / "subword.npy", subword_table(tokenizer))
    meta = {
        "format": FORMAT, "version": VERSION, "options": asdict(options),
        "vocab_size": tokenizer.vocab_size, "vocab_sha256": vocab_sha256(tokenizer),
        "special_ids": {"pad": tokenizer.pad_id, "cls": tokenizer.cls_id, "sep": tokenizer.sep_id,
                        "mask": tokenizer.mask_id},
        "token_dtype": np.dtype(token_dtype).name, "counts": asdict(counts), "shards": shards,
        "content_sha256": content.hexdigest(),
    }
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=2) + "\n")
    return meta


def move_prepared(new: Path, out_dir: Path) -> None:
    """Put the complete data of `new` in place of `out_dir`'s. Into a missing or empty folder this is one rename.
    Over earlier data: meta.json goes first (the folder then reads as unfinished, never as a mix), the earlier
    shards are removed, the new ones moved in, and the new meta.json moved in last."""
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        os.replace(new, out_dir)
        return
    (out_dir / "meta.json").unlink(missing_ok=True)
    (out_dir / "subword.npy").unlink(missing_ok=True)
    for shard in out_dir.glob("shard_*"):
        shutil.rmtree(shard)
    for item in sorted(new.iterdir(), key=lambda p: p.name == "meta.json"):  # meta.json last
        os.replace(item, out_dir / item.name)


def _content_digest(options: PretrainingOptions) -> "hashlib._Hash":
    """sha256 over the options and then every shard's arrays (see _hash_arrays): the data's identity, which a
    resumed run compares (an example count would not tell two corpora of one size apart)."""
    return hashlib.sha256(json.dumps(asdict(options), sort_keys=True).encode("utf-8"))


def _hash_arrays(digest: "hashlib._Hash", arrays: dict[str, np.ndarray]) -> None:
    for name in sorted(arrays):
        digest.update(name.encode("ascii"))
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())


def _write_shard(folder: Path, examples: list[PretrainingExample], token_dtype: type,
                 options: PretrainingOptions, content: "hashlib._Hash") -> dict:
    lengths = [len(e.input_ids) for e in examples]
    arrays = {
        "input_ids": np.concatenate([e.input_ids for e in examples]).astype(token_dtype),
        "offsets": np.cumsum([0] + lengths, dtype=np.int64),
        "b_start": np.array([e.b_start for e in examples], dtype=np.int32),
    }
    if options.nsp:
        arrays["next_sentence_label"] = np.array([e.next_sentence_label for e in examples], dtype=np.int8)
    if not options.dynamic_masking:
        arrays["masked_positions"] = np.concatenate([e.masked_positions for e in examples]).astype(np.int32)
        arrays["masked_ids"] = np.concatenate([e.masked_ids for e in examples]).astype(token_dtype)
        arrays["masked_offsets"] = np.cumsum([0] + [len(e.masked_positions) for e in examples], dtype=np.int64)
    folder.mkdir(parents=True)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    _hash_arrays(content, arrays)
    return {"name": folder.name, "examples": len(examples), "tokens": int(sum(lengths))}


# -- reading ----------------------------------------------------------------------------------------------------
def read_meta(folder: str | os.PathLike) -> dict:
    path = Path(folder) / "meta.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; the folder was not prepared or its preparation did not finish")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DataError(f"{path}: not {FORMAT} version {VERSION} data")
    return meta


class PretrainingDataset(Dataset):
    """A prepared folder as a map-style dataset of model inputs (see `example_features`).

    Arrays are memory-mapped, opened lazily and dropped when the dataset is pickled into loader workers
    (pickling a memmap would copy it). Call `set_epoch` each epoch so dynamic masking draws new masks.
    """

    # Dynamic masking draws from a generator seeded by (seed, epoch, index), never from the global ones, so the
    # training loop need not seed those for each example (minibert.training.batches.SeededExamples).
    seeds_its_examples = True

    def __init__(self, folder: str | os.PathLike, epoch: int = 0, tokenizer: BertTokenizer | None = None):
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        if tokenizer is not None and vocab_sha256(tokenizer) != self.meta["vocab_sha256"]:
            raise DataError(f"{self.folder / 'meta.json'}: prepared with a different vocabulary than the "
                            "tokenizer given")
        self.options = PretrainingOptions(**self.meta["options"])
        self.epoch = epoch
        self.masker = self._masker() if self.options.dynamic_masking else None
        self._starts = np.cumsum([0] + [shard["examples"] for shard in self.meta["shards"]])
        self._open: dict[int, dict[str, np.ndarray]] = {}
        for shard in range(len(self.meta["shards"])):
            self._shard(shard)  # fail now, naming the file, rather than mid-epoch

    def _masker(self) -> Masker:
        subword = None
        if self.options.whole_word_mask:
            subword = np.load(self._file(self.folder / "subword.npy"))
        special = self.meta["special_ids"]
        return Masker(self.meta["vocab_size"], special["mask"], (special["cls"], special["sep"], special["pad"]),
                      self.options.masked_lm_prob, self.options.max_predictions_per_seq, subword)

    def _file(self, path: Path) -> Path:
        if not path.is_file():
            raise DataError(f"{path}: missing from the prepared data")
        return path

    def _shard(self, shard: int) -> dict[str, np.ndarray]:
        if shard not in self._open:
            record = self.meta["shards"][shard]
            names = SHARD_FILES + (NSP_FILES if self.options.nsp else ())
            if not self.options.dynamic_masking:
                names += STATIC_MASK_FILES
            arrays = {name: np.load(self._file(self.folder / record["name"] / f"{name}.npy"), mmap_mode="r")
                      for name in names}
            if len(arrays["b_start"]) != record["examples"] or len(arrays["input_ids"]) != record["tokens"]:
                raise DataError(f"{self.folder / record['name']}: sizes differ from meta.json")
            self._open[shard] = arrays
        return self._open[shard]

    def fingerprint(self) -> str:
        """The data's content hash (see _content_digest): from meta.json, or computed for data prepared before
        minibert recorded it."""
        if "content_sha256" not in self.meta:
            digest = _content_digest(self.options)
            for shard in range(len(self.meta["shards"])):
                _hash_arrays(digest, self._shard(shard))
            self.meta["content_sha256"] = digest.hexdigest()
        return self.meta["content_sha256"]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return int(self._starts[-1])

    def example(self, index: int) -> PretrainingExample:
        """The stored record of example `index` (before dynamic masking)."""
        if not 0 <= index < len(self):
            raise IndexError(f"example {index} out of range for {len(self)} examples")
        shard = int(np.searchsorted(self._starts, index, side="right")) - 1
        arrays, local = self._shard(shard), index - int(self._starts[shard])
        start, end = arrays["offsets"][local], arrays["offsets"][local + 1]
        masked_positions = masked_ids = np.zeros(0, dtype=np.int64)
        if not self.options.dynamic_masking:
            mask_start, mask_end = arrays["masked_offsets"][local], arrays["masked_offsets"][local + 1]
            masked_positions = arrays["masked_positions"][mask_start:mask_end].astype(np.int64)
            masked_ids = arrays["masked_ids"][mask_start:mask_end].astype(np.int64)
        label = int(arrays["next_sentence_label"][local]) if self.options.nsp else IGNORE_INDEX
        return PretrainingExample(arrays["input_ids"][start:end].astype(np.int64), int(arrays["b_start"][local]),
                                  label, masked_positions, masked_ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return example_features(self.example(index), self.masker, self.options.seed, self.epoch, index)

    def token_counts(self) -> np.ndarray:
        """How often each vocabulary id occurs in the stored text, [CLS], [SEP], [PAD] and [MASK] excluded: a
        unigram estimate. With static masking a masked position counts its original id and also the id shown
        there (usually [MASK], excluded; 1 in 5 a random or the same id), an excess of about 3% of the targets."""
        vocab = self.meta["vocab_size"]
        counts = np.zeros(vocab, dtype=np.int64)
        for shard in range(len(self.meta["shards"])):
            arrays = self._shard(shard)
            counts += np.bincount(arrays["input_ids"], minlength=vocab)
            if not self.options.dynamic_masking:
                counts += np.bincount(arrays["masked_ids"], minlength=vocab)
        counts[self._special_ids()] = 0
        return counts

    def cooccurrence_counts(self, window: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
        """How often each pair of vocabulary ids occurs within `window` positions in the stored examples, a pair
        d apart counting 1/d; specials excluded (see minibert.pretraining.cooccurrence). With static masking the
        ids shown at masked positions are counted as they are ([MASK] is excluded; 1 in 5 is a random or the
        same id)."""
        keys, weights = [], []
        for shard in range(len(self.meta["shards"])):
            arrays = self._shard(shard)
            shard_keys, shard_weights = cooccurrence_counts(np.asarray(arrays["input_ids"]),
                                                            np.asarray(arrays["offsets"]), self.meta["vocab_size"],
                                                            self._special_ids(), window)
            keys.append(shard_keys)
            weights.append(shard_weights)
        return sum_by_key(np.concatenate(keys), np.concatenate(weights))

    def _special_ids(self) -> list[int]:
        """[CLS], [SEP], [PAD] and [MASK]: ids that are not text."""
        special = self.meta["special_ids"]
        return [special["cls"], special["sep"], special["pad"], special["mask"]]


def collate_pretraining(examples: Sequence[dict[str, torch.Tensor]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Stack examples into a batch padded to its longest example: ids with `pad_id`, token types and the
    attention mask with 0, labels with IGNORE_INDEX so padding is never a prediction target."""
    width = max(len(e["input_ids"]) for e in examples)
    pad_values = {"input_ids": pad_id, "token_type_ids": 0, "attention_mask": 0, "labels": IGNORE_INDEX}
    batch = {}
    for name, value in pad_values.items():
        batch[name] = torch.full((len(examples), width), value, dtype=torch.long)  # (B, T)
        for row, example in enumerate(examples):
            batch[name][row, :len(example[name])] = example[name]
    if "next_sentence_label" in examples[0]:
        batch["next_sentence_label"] = torch.stack([e["next_sentence_label"] for e in examples])  # (B,)
    return batch
