"""BertConfig: BERT's hyper-parameters, read from and written to Hugging Face `config.json`."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minibert.activations import ACTIVATIONS
from minibert.errors import ConfigError

ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")
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
        if self.id2label is not None:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            self.num_labels = len(self.id2label)
        self.validate()

    # -- validation -------------------------------------------------------------------------------------------
    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config: {name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ConfigError(
                f"config: hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})")
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"config: unknown hidden_act {self.hidden_act!r}; expected one of {', '.join(ACTIVATIONS)}")
        if self.position_embedding_type != "absolute":
            raise ConfigError(
                f"config: position_embedding_type {self.position_embedding_type!r} is not supported; minibert "
                "implements BERT's learned absolute positions")
        if self.attn_implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ConfigError(f"config: unknown attn_implementation {self.attn_implementation!r}; "
                              f"expected one of {', '.join(ATTENTION_IMPLEMENTATIONS)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"config: {name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.classifier_dropout is not None and not 0.0 <= self.classifier_dropout < 1.0:
            raise ConfigError(f"config: classifier_dropout must be in [0, 1), got {self.classifier_dropout!r}")
        if self.layer_norm_eps <= 0:
            raise ConfigError(f"config: layer_norm_eps must be positive, got {self.layer_norm_eps!r}")
        if self.num_labels < 1:
            raise ConfigError(f"config: num_labels must be at least 1, got {self.num_labels!r}")
        if self.classifier_pooling not in POOLINGS:
            raise ConfigError(f"config: classifier_pooling must be one of {', '.join(POOLINGS)}, got "
                              f"{self.classifier_pooling!r}")

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
            for k, v in data.pop("minibert").items():
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


# Named sizes for training from scratch.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "small": dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048),
    "medium": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=2048),
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "bert-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}
