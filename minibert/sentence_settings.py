"""What a sentence-transformers folder says about its embeddings, read so that `embed` gives the vectors
`SentenceTransformer(folder).encode` gives.

A sentence-transformers model is a plain BERT folder plus a few small files:

    modules.json                       the pipeline: Transformer -> Pooling -> (Normalize)
    sentence_bert_config.json          max_seq_length (older versions; newer ones keep it in tokenizer_config.json's
                                       model_max_length), do_lower_case
    1_Pooling/config.json              the pooling: pooling_mode ("mean", ...) or the older pooling_mode_*_token
                                       switches, include_prompt
    config_sentence_transformers.json  prompts and the default prompt's name

A module minibert does not compute (Dense, LayerNorm, ...) is refused, naming the file: its vectors would differ.
A folder without modules.json is a plain BERT: mean pooling over real tokens, no normalisation, the model's length.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minibert.errors import CheckpointError

# The pooling modes sentence-transformers knows, in the order it concatenates them; "pooler" is BERT's own tanh
# pooler on [CLS], which sentence-transformers does not use.
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
LEGACY_POOLING_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                       "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                       "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
MODULES = ("Transformer", "Pooling", "Normalize")  # the sentence-transformers modules embed computes


@dataclass(frozen=True)
class SentenceSettings:
    pooling: tuple[str, ...] = ("mean",)  # several: concatenated, in POOLING_MODES order (as sentence-transformers)
    normalize: bool = False
    max_length: int | None = None  # None: the tokenizer's and the model's limit
    lowercase: bool = False  # do_lower_case: texts lowercased before tokenizing
    include_prompt: bool = True  # False: the prompt's tokens are left out of the pooling
    prompts: dict[str, str] | None = None
    default_prompt_name: str | None = None
    source: str = "defaults (no sentence-transformers files)"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def _pooling(path: Path) -> tuple[tuple[str, ...], bool]:
    """(modes, include_prompt) from 1_Pooling/config.json, in either of sentence-transformers' two layouts."""
    config = _read_json(path)
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    mode = config.get("pooling_mode")
    if mode is None:
        modes = tuple(name for key, name in LEGACY_POOLING_KEYS.items() if config.get(key)) or ("mean",)
    else:
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
    unknown = [m for m in modes if m not in POOLING_MODES]
    if unknown or not modes:
        raise CheckpointError(f"{path}: pooling mode {unknown[0] if unknown else mode!r} is not one of "
                              f"{', '.join(POOLING_MODES)}")
    return modes, bool(config.get("include_prompt", True))


def read_sentence_settings(folder: str | os.PathLike) -> SentenceSettings:
    """The settings of `folder`'s sentence-transformers files, or the defaults when it has none."""
    folder = Path(folder)
    if not (folder / "modules.json").is_file():
        return SentenceSettings()
    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list) or not all(isinstance(m, dict) and "type" in m for m in modules):
        raise CheckpointError(f"{folder / 'modules.json'}: expected a list of {{\"type\", \"path\"}} objects")
    kinds = [str(module["type"]).rsplit(".", 1)[-1] for module in modules]
    for module, kind in zip(modules, kinds):
        if kind not in MODULES:
            raise CheckpointError(f"{folder / 'modules.json'}: module {module.get('path') or module['type']!r} "
                                  f"({module['type']}) is not computed by minibert (only {', '.join(MODULES)}); "
                                  "its embeddings would differ from sentence-transformers'")
    if "Pooling" not in kinds:
        raise CheckpointError(f"{folder / 'modules.json'}: no Pooling module; minibert embeds with one")
    pooling, include_prompt = _pooling(folder / modules[kinds.index("Pooling")].get("path", "") / "config.json")
    transformer, extra = ({} if not (folder / name).is_file() else _read_json(folder / name)
                          for name in ("sentence_bert_config.json", "config_sentence_transformers.json"))
    max_length = transformer.get("max_seq_length")
    return SentenceSettings(pooling=pooling, normalize="Normalize" in kinds,
                            max_length=int(max_length) if max_length is not None else None,
                            lowercase=bool(transformer.get("do_lower_case", False)), include_prompt=include_prompt,
                            prompts=extra.get("prompts") or None, default_prompt_name=extra.get("default_prompt_name"),
                            source=str(folder / "modules.json"))
