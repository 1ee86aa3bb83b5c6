"""BertConfig: BERT's hyper-parameters, read from and written to Hugging Face `config.json`."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from minibert.activations import ACTIVATIONS
from minibert.errors import ConfigError, shown

ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
POSITIVE_INTEGERS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size", "num_labels")
PROBABILITIES = ("hidden_dropout_prob", "attention_probs_dropout_prob")
# What a sequence classification/regression head reads (transformers' name for ModernBERT's option): "cls", BERT's
# tanh pooler on [CLS] (BERT 2018, section 4); "mean", the mean of the last layer's real tokens, with no pooler.
POOLINGS = ("cls", "mean")


@dataclass
class BertConfig:
    # Architecture (BERT 2018, section 3 and appendix A.2; defaults are bert-base-uncased).
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"
    # Heads.
    classifier_dropout: float | None = None
    num_labels: int = 2
    id2label: dict[int, str] | None = None
    problem_type: str | None = None  # "regression", "single_label_classification" or "multi_label_classification"
    classifier_pooling: str = "cls"  # POOLINGS; transformers' BertForSequenceClassification has only "cls"
    # minibert's own execution choices, written to config.json under one "minibert" key that transformers ignores.
    attn_implementation: str = "sdpa"  # "eager": the readable reference path; "sdpa": the fused kernel
    unpad: bool = True  # run dense layers on real tokens only when a batch has padding
    # Keys from config.json that minibert does not use, kept so that a load/save round trip loses nothing.
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()
        if self.id2label is not None:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            self.num_labels = len(self.id2label)

    # -- validation -------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Every value typed and in range, and the model small enough to build here: checked before any tensor
        is allocated, so a config.json with `"layer_norm_eps": Infinity` or `"hidden_size": 1e9` is one line
        naming the key, not all-zero vectors or a failed allocation of a terabyte."""
        for name in POSITIVE_INTEGERS:
            _check(name, getattr(self, name), _is_integer, "a positive integer", lambda value: value >= 1)
        for name in PROBABILITIES:
            _check(name, getattr(self, name), _is_number, "a number in [0, 1)", lambda value: 0 <= value < 1)
        if self.classifier_dropout is not None:
            _check("classifier_dropout", self.classifier_dropout, _is_number, "a number in [0, 1) or null",
                   lambda value: 0 <= value < 1)
        # An epsilon as large as the variance it guards (about 1 after each layer) flattens every vector.
        _check("layer_norm_eps", self.layer_norm_eps, _is_number, "a number in (0, 1)", lambda value: 0 < value < 1)
        if struct.unpack("f", struct.pack("f", self.layer_norm_eps))[0] == 0:  # layer norm adds it in float32
            raise ConfigError(f"config: layer_norm_eps {self.layer_norm_eps!r} is 0 in float32 (the least it holds "
                              "is 1.4e-45), so it guards nothing; BERT uses 1e-12")
        _check("initializer_range", self.initializer_range, _is_number, "a number >= 0", lambda value: value >= 0)
        if self.pad_token_id is not None:
            _check("pad_token_id", self.pad_token_id, _is_integer, f"a token id in [0, vocab_size {self.vocab_size})",
                   lambda value: 0 <= value < self.vocab_size)
        for name, allowed in (("hidden_act", tuple(ACTIVATIONS)), ("position_embedding_type", ("absolute",)),
                              ("attn_implementation", ATTENTION_IMPLEMENTATIONS)):
            _check(name, getattr(self, name), lambda value: isinstance(value, str), f"one of {', '.join(allowed)}",
                   lambda value: value in allowed)
        if self.problem_type is not None:
            _check("problem_type", self.problem_type, lambda value: isinstance(value, str),
                   f"one of {', '.join(PROBLEM_TYPES)} or null", lambda value: value in PROBLEM_TYPES)
        _check("unpad", self.unpad, lambda value: isinstance(value, bool), "true or false")
        if not isinstance(self.classifier_pooling, str) or self.classifier_pooling not in POOLINGS:
            raise ConfigError(f"config: classifier_pooling must be one of {', '.join(POOLINGS)}, got "
                              f"{shown(self.classifier_pooling)}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ConfigError(
                f"config: hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})")
        if self.id2label is not None:
            _check_labels(self.id2label)
        self.check_fits_in_memory()

    def parameter_count(self) -> dict[str, int]:
        """The parameters of the model this config describes, by part (an encoder with its pooler and a masked-LM
        head; a task head adds hidden_size x num_labels), computed without building it."""
        d, i = self.hidden_size, self.intermediate_size
        layer = 4 * (d * d + d) + 2 * (d * i) + i + d + 4 * d  # attention, feed-forward, two layer norms
        return {f"word embeddings (vocab_size {self.vocab_size} x hidden_size {d})": self.vocab_size * d,
                f"position embeddings (max_position_embeddings {self.max_position_embeddings} x hidden_size {d})":
                    self.max_position_embeddings * d,
                f"token type embeddings (type_vocab_size {self.type_vocab_size} x hidden_size {d})":
                    self.type_vocab_size * d,
                f"layers (num_hidden_layers {self.num_hidden_layers}, hidden_size {d}, intermediate_size {i})":
                    self.num_hidden_layers * layer,
                "pooler and heads": 2 * (d * d + d) + 2 * d + self.vocab_size + self.num_labels * (d + 1)}

    def check_fits_in_memory(self) -> None:
        """Refuse a model whose float32 weights alone would not fit in the memory this process may use."""
        from minibert.plumbing.machine import memory_bytes
        available = memory_bytes()
        parts = self.parameter_count()
        needed = 4 * sum(parts.values())
        if available is not None and needed > available:
            largest = max(parts, key=parts.get)
            raise ConfigError(f"config: {needed / 2**30:,.0f} GiB of float32 weights, more than the "
                              f"{available / 2**30:,.1f} GiB of memory here; most in the {largest}")

    # -- derived ----------------------------------------------------------------------------------------------
    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in self.labels().items()}

    def labels(self) -> dict[int, str]:
        return self.id2label if self.id2label is not None else {i: f"LABEL_{i}" for i in range(self.num_labels)}

    def replace(self, **changes: Any) -> "BertConfig":
        # A new label count makes the stored label names stale; without this, __post_init__ would restore the
        # old count from them.
        if "num_labels" in changes and "id2label" not in changes and self.id2label is not None \
                and len(self.id2label) != changes["num_labels"]:
            changes["id2label"] = None
        return dataclasses.replace(self, **changes)

    # -- Hugging Face config.json -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BertConfig":
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: data.pop(k) for k in list(data) if k in known}
        data.pop("label2id", None)  # derived from id2label
        if "minibert" in data:  # our own execution settings, stored under one key transformers ignores
            settings = data.pop("minibert")
            if not isinstance(settings, dict):
                raise ConfigError(f"config: minibert must be an object of minibert's settings, got {shown(settings)}")
            for k, v in settings.items():
                if k in ("attn_implementation", "unpad"):
                    kwargs[k] = v
        kwargs["extra"] = data
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "BertConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        except RecursionError:
            raise ConfigError(f"{path}: not a config (JSON nested too deeply)") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        except TypeError as e:
            raise ConfigError(f"{path}: {e}") from None

    def to_dict(self, architecture: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name in ("extra", "attn_implementation", "unpad", "id2label", "num_labels"):
                continue
            data[f.name] = getattr(self, f.name)
        data["id2label"] = {str(i): label for i, label in self.labels().items()}
        data["label2id"] = self.label2id
        data["model_type"] = "bert"
        if architecture is not None:
            data["architectures"] = [architecture]
        data["minibert"] = {"attn_implementation": self.attn_implementation, "unpad": self.unpad}
        return dict(sorted(data.items()))

    def to_json(self, path: str | os.PathLike, architecture: str | None = None) -> None:
        from minibert.plumbing.atomic_files import atomic_write_text  # local import keeps config importable on its own
        atomic_write_text(Path(path), json.dumps(self.to_dict(architecture), indent=2) + "\n")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """An int or a finite float (JSON's Infinity and NaN are read as floats)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(name: str, value: Any, typed: Callable[[Any], bool], what: str,
           accept: Callable[[Any], bool] = lambda value: True) -> None:
    """`value` of the config key `name` is of its type (`typed`) and within range (`accept`), else a ConfigError
    saying `what` it must be."""
    if not typed(value) or not accept(value):
        kind = "" if typed(value) else " (not finite)" if isinstance(value, float) else f" ({_json_kind(value)})"
        raise ConfigError(f"config: {name} must be {what}, got {shown(value)}{kind}")


def _json_kind(value: Any) -> str:
    """What a value read from JSON is, in JSON's words."""
    for kind, name in ((bool, "true/false"), (str, "text"), (dict, "an object"), (list, "a list"),
                       (type(None), "null")):
        if isinstance(value, kind):
            return name
    return "a number"


def _check_labels(id2label: Any) -> None:
    """id2label maps the class ids 0..n-1 (as numbers, or digits as JSON keys are) to names."""
    if not isinstance(id2label, dict):
        raise ConfigError(f"config: id2label must map class ids to names, got {shown(id2label)} ({_json_kind(id2label)})")
    if not id2label:
        raise ConfigError("config: id2label is empty; a classifier has at least one class")
    ids = []
    for key, name in id2label.items():
        if not (_is_integer(key) or (isinstance(key, str) and key.isdigit() and key.isascii())):
            raise ConfigError(f"config: id2label has the key {shown(key)}; class ids are whole numbers 0, 1, ...")
        if not isinstance(name, (str, int, float)) or isinstance(name, bool):
            raise ConfigError(f"config: id2label[{key}] must be a label name (text), got {shown(name)}")
        ids.append(int(key))
    if sorted(ids) != list(range(len(ids))):
        raise ConfigError(f"config: id2label's ids must be 0 to {len(ids) - 1}, got {shown(sorted(ids))}")


# Named sizes for training from scratch.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "small": dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048),
    "medium": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=2048),
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "bert-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}
