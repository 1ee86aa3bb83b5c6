"""Hugging Face BERT checkpoints in and out of minibert.

One table, KEY_MAP, pairs each minibert parameter name with its Hugging Face name; loading reads it one way and
saving the other. Checkpoint dialects are handled by normalising names before the table is consulted:
- `LayerNorm.gamma` / `LayerNorm.beta` (the original TF export, as in bert-base-uncased) -> `weight` / `bias`;
- the `bert.` prefix, present in head checkpoints and absent from bare `BertModel` exports, is added or dropped;
- tensors minibert derives instead of storing (DERIVED, and the model class's declared `tied_weights`, such as the
  MLM decoder) are checked where that means something, then set aside.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from minibert.config import BertConfig
from minibert.errors import CheckpointError, ConfigError, ShapeMismatchError
from minibert.plumbing.hub import WEIGHT_FILES, resolve
from minibert.plumbing.atomic_files import atomic_write_bytes, new_folder

logger = logging.getLogger("minibert")

# (minibert name, Hugging Face name). "{i}" is a layer index. Encoder rows are relative to the encoder, which
# head models keep under `bert.` on both sides.
ENCODER_KEY_MAP = [
    ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
    ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight"),
    ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.weight"),
    ("embeddings.norm.{p}", "embeddings.LayerNorm.{p}"),
    ("layers.{i}.attention.query.{p}", "encoder.layer.{i}.attention.self.query.{p}"),
    ("layers.{i}.attention.key.{p}", "encoder.layer.{i}.attention.self.key.{p}"),
    ("layers.{i}.attention.value.{p}", "encoder.layer.{i}.attention.self.value.{p}"),
    ("layers.{i}.attention.output.{p}", "encoder.layer.{i}.attention.output.dense.{p}"),
    ("layers.{i}.attention_norm.{p}", "encoder.layer.{i}.attention.output.LayerNorm.{p}"),
    ("layers.{i}.ffn.intermediate.{p}", "encoder.layer.{i}.intermediate.dense.{p}"),
    ("layers.{i}.ffn.output.{p}", "encoder.layer.{i}.output.dense.{p}"),
    ("layers.{i}.ffn_norm.{p}", "encoder.layer.{i}.output.LayerNorm.{p}"),
    ("pooler.dense.{p}", "pooler.dense.{p}"),
]
HEAD_KEY_MAP = [
    ("mlm.dense.{p}", "cls.predictions.transform.dense.{p}"),
    ("mlm.norm.{p}", "cls.predictions.transform.LayerNorm.{p}"),
    ("mlm.bias", "cls.predictions.bias"),
    ("nsp.{p}", "cls.seq_relationship.{p}"),
    ("classifier.{p}", "classifier.{p}"),
    ("qa_outputs.{p}", "qa_outputs.{p}"),
    # ELECTRA's replaced-token detection head (minibert.pretraining.electra), under transformers' ELECTRA names
    ("rtd.dense.{p}", "discriminator_predictions.dense.{p}"),
    ("rtd.prediction.{p}", "discriminator_predictions.dense_prediction.{p}"),
]
ENCODER_PREFIX = "bert."
LEGACY_NAMES = [(re.compile(r"LayerNorm\.gamma$"), "LayerNorm.weight"), (re.compile(r"LayerNorm\.beta$"),
                                                                          "LayerNorm.bias")]
# Tensors some checkpoints store that minibert derives for every model: the position index buffer. (A head that ties
# a tensor to another declares it in its class's `tied_weights`: the MLM decoder.)
DERIVED = {"embeddings.position_ids": None}


def _to_regex(pattern: str) -> re.Pattern:
    body = re.escape(pattern).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(body + "$")


def _translate(name: str, table: list[tuple[str, str]], source: int) -> str | None:
    """Map `name` through `table` from column `source` (0 = minibert, 1 = Hugging Face) to the other column."""
    for row in table:
        match = _to_regex(row[source]).match(name)
        if match:
            return row[1 - source].format(**match.groupdict())
    return None


def hf_name(minibert_name: str) -> str:
    """minibert parameter name -> Hugging Face name, for a model of any class."""
    if minibert_name.startswith(ENCODER_PREFIX):
        inner = _translate(minibert_name[len(ENCODER_PREFIX):], ENCODER_KEY_MAP, 0)
        if inner is not None:
            return ENCODER_PREFIX + inner
    found = _translate(minibert_name, ENCODER_KEY_MAP + HEAD_KEY_MAP, 0)
    if found is None:
        raise KeyError(f"minibert parameter {minibert_name!r} has no row in the key map")
    return found


def hf_state_dict(model: torch.nn.Module) -> dict[str, Tensor]:
    """The model's parameters under Hugging Face names (the tied decoder weight is not repeated)."""
    return {hf_name(name): tensor for name, tensor in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------------------------
# Reading weight files
# ----------------------------------------------------------------------------------------------------------------
def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None


def _read_bin(path: Path) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable PyTorch weights file ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors")
    return state


def read_weights(path: Path) -> dict[str, Tensor]:
    """A .safetensors or .bin file, or a sharded checkpoint's `*.index.json`."""
    if path.name.endswith(".index.json"):
        try:
            weight_map = dict(json.loads(path.read_text(encoding="utf-8"))["weight_map"])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path}: not a valid shard index ({type(e).__name__}: {e})") from None
        state: dict[str, Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            state.update(read_weights(path.parent / shard))
        return state
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_bin(path)


def find_weights(folder: Path) -> Path:
    candidates = WEIGHT_FILES + ("model.safetensors.index.json", "pytorch_model.bin.index.json")
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"{folder}: no weights found (expected one of {', '.join(candidates)})")


# ----------------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    """What loading did with each tensor, so nothing is silently dropped or silently invented."""
    source: str
    loaded: int = 0
    legacy_renamed: int = 0
    newly_initialised: list[str] = field(default_factory=list)  # minibert names with no tensor in the checkpoint
    unused: list[str] = field(default_factory=list)  # checkpoint names the model has no place for
    derived: list[str] = field(default_factory=list)  # checkpoint names minibert derives instead (position_ids...)

    def check_trained(self, use: str, prefixes: tuple[str, ...] = ("",)) -> None:
        """Refuse to run `use` (an inference command) on a model whose parts under `prefixes` (minibert names;
        all by default) were newly initialised: their output would be random, whatever the input."""
        untrained = [name for name in self.newly_initialised if name.startswith(prefixes)]
        if untrained:
            raise CheckpointError(f"{self.source}: {use} needs trained weights, but the checkpoint has no "
                                  f"{summarise([hf_name(name) for name in untrained])} (they would be random); "
                                  "use a checkpoint that has them (e.g. fine-tune first)")

    def summary(self) -> str:
        lines = [f"loaded {self.loaded} tensors from {self.source}"
                 + (f" ({self.legacy_renamed} legacy gamma/beta names)" if self.legacy_renamed else "")]
        if self.derived:
            lines.append(f"derived rather than loaded: {', '.join(self.derived)}")
        if self.newly_initialised:
            lines.append(f"newly initialised (train before use): {', '.join(self.newly_initialised)}")
        if self.unused:
            lines.append(f"not used by this model: {', '.join(self.unused)}")
        return "\n".join(lines)


def _modern(name: str) -> str:
    """`LayerNorm.gamma`/`beta` -> `LayerNorm.weight`/`bias`; other names unchanged."""
    for pattern, modern in LEGACY_NAMES:
        if pattern.search(name):
            return pattern.sub(modern, name)
    return name


def _normalise(name: str, report: LoadReport) -> str:
    modern = _modern(name)
    report.legacy_renamed += modern != name
    return modern


def _is_encoder_name(name: str) -> bool:
    return _translate(name, ENCODER_KEY_MAP, 1) is not None or name in DERIVED


def map_checkpoint(model: torch.nn.Module, checkpoint: dict[str, Tensor], source: str) -> tuple[dict, LoadReport]:
    """Rename a Hugging Face state dict to the model's names, checking shapes; returns it with a report."""
    report = LoadReport(source)
    has_encoder_prefix = any(name.startswith(ENCODER_PREFIX) for name in model.state_dict())
    expected = {hf_name(name): name for name in model.state_dict()}  # HF name -> minibert name
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    mapped: dict[str, Tensor] = {}
    derived = {**DERIVED, **model.tied_weights}  # checkpoint name -> what it equals (None: nothing to check)
    tied: list[tuple[str, str, Tensor]] = []  # (checkpoint name, the name it equals, tensor)
    for raw_name, tensor in checkpoint.items():
        name = _normalise(raw_name, report)
        # Bring the name to the model's prefix convention: add `bert.` for a head model reading a bare encoder
        # export, drop it for a bare encoder reading a head checkpoint.
        if has_encoder_prefix and not name.startswith(ENCODER_PREFIX) and _is_encoder_name(name):
            name = ENCODER_PREFIX + name
        elif not has_encoder_prefix and name.startswith(ENCODER_PREFIX):
            name = name[len(ENCODER_PREFIX):]
        bare = name[len(ENCODER_PREFIX):] if name.startswith(ENCODER_PREFIX) else name
        if bare in derived:
            report.derived.append(raw_name)
            if derived[bare] is not None:
                tied.append((raw_name, derived[bare], tensor))
            continue
        if name not in expected:
            report.unused.append(raw_name)
            continue
        target = expected[name]
        if tuple(tensor.shape) != shapes[target]:
            raise ShapeMismatchError(f"{source}: {raw_name} has shape {tuple(tensor.shape)} in the checkpoint but "
                                     f"{shapes[target]} in the model ({target}); check config.json", target)
        mapped[target] = tensor
    for raw_name, equal_to, tensor in tied:
        target = expected.get(equal_to) or expected.get(ENCODER_PREFIX + equal_to)
        kept = mapped.get(target)
        if kept is not None and not torch.equal(tensor.to(kept.dtype), kept):
            logger.warning("%s: %s differs from %s; minibert ties them and uses %s", source, raw_name, equal_to,
                           equal_to)
    report.loaded = len(mapped)
    report.newly_initialised = [name for name in model.state_dict() if name not in mapped]
    check_encoder_complete(model.config, report, list(checkpoint))
    return mapped, report


# Only heads (and the pooler, which checkpoints of MLM or token heads leave out, as transformers does) may be newly
# initialised: an encoder tensor missing or left over means the config does not describe the weights, and a model
# built from it would be partly random while looking loaded.
def _encoder_part(name: str) -> str | None:
    """The encoder-relative Hugging Face name of a (minibert or checkpoint) tensor of the encoder proper
    (embeddings and layers, not the pooler), else None."""
    name = _modern(name)
    bare = name[len(ENCODER_PREFIX):] if name.startswith(ENCODER_PREFIX) else name
    if _translate(bare, ENCODER_KEY_MAP, 1) is not None:
        return None if bare.startswith("pooler.") else bare
    inner = _translate(bare, ENCODER_KEY_MAP, 0)
    return None if inner is None or inner.startswith("pooler.") else inner


def check_encoder_complete(config: BertConfig, report: LoadReport, checkpoint_names: list[str]) -> None:
    missing = [part for part in map(_encoder_part, report.newly_initialised) if part is not None]
    extra = [name for name in report.unused if _encoder_part(name) is not None]
    if not missing and not extra:
        return
    layers = {int(m.group(1)) for name in checkpoint_names if (m := re.search(r"encoder\.layer\.(\d+)\.", name))}
    held = f"; the checkpoint has {max(layers) + 1} layers" if layers else ""
    problems = ([f"has no {summarise(missing)}"] if missing else []) + \
        ([f"has {summarise(extra)}, which the config has no place for"] if extra else [])
    raise CheckpointError(f"{report.source}: the weights do not match config.json (num_hidden_layers "
                          f"{config.num_hidden_layers}{held}): the checkpoint {' and '.join(problems)}; only heads "
                          "may be newly initialised, so fix config.json or use a complete checkpoint")


def summarise(names: list[str], shown: int = 4) -> str:
    """Tensor names for a message: a layer's names collapse to `encoder.layer.N.*`, and a long list is cut."""
    grouped: list[str] = []
    for name in names:
        m = re.match(r"(.*encoder\.layer\.\d+\.)", name)
        label = m.group(1) + "*" if m and sum(n.startswith(m.group(1)) for n in names) > 1 else name
        if label not in grouped:
            grouped.append(label)
    more = f" and {len(grouped) - shown} more" if len(grouped) > shown else ""
    return ", ".join(grouped[:shown]) + more


def load_pretrained(cls, name_or_path: str | os.PathLike, config: BertConfig | None = None,
                    dtype: torch.dtype | None = None, **config_overrides):
    """Build `cls` from a checkpoint folder, a single weights file (config.json beside it, or `config=`), or a
    hub id. `config_overrides` (e.g. num_labels=3, attn_implementation="eager") change the stored config."""
    path = Path(name_or_path).expanduser()
    folder = resolve(name_or_path)
    weights = path if path.is_file() else find_weights(folder)
    if config is None:
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise CheckpointError(f"{folder}: no config.json (pass config= to load a bare weights file)")
        config = BertConfig.from_json(config_file)
    if config_overrides:
        if "id2label" in config_overrides and "num_labels" not in config_overrides:
            config_overrides["num_labels"] = len(config_overrides["id2label"])
        try:
            config = config.replace(**config_overrides)
        except TypeError as e:
            raise ConfigError(f"from_pretrained: {e}") from None
    model = cls(config)
    mapped, report = map_checkpoint(model, read_weights(weights), str(weights))
    target_dtype = dtype or model.dtype
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name in mapped:
                tensor.copy_(mapped[name].to(target_dtype))
    model.to(target_dtype)
    model.load_report = report
    # Info, not a warning: the encoder is complete (check_encoder_complete), so what is new is a head, which
    # fine-tuning trains and inference commands refuse (LoadReport.check_trained).
    logger.info(report.summary())
    return model.eval()


# ----------------------------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------------------------
def write_model_files(model: torch.nn.Module, folder: Path) -> None:
    """model.safetensors (Hugging Face names) and config.json into an existing `folder`, each replaced atomically;
    a failed write raises its OSError, naming the file."""
    from safetensors.torch import save
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in hf_state_dict(model).items()}
    # Serialised in memory, then written by Python: a full disk is then an OSError naming the file (safetensors'
    # own writer reports it as a SafetensorError).
    atomic_write_bytes(folder / "model.safetensors", save(tensors, metadata={"format": "pt"}))
    model.config.to_json(folder / "config.json", architecture=type(model).__name__)


def load_exact(model: torch.nn.Module, path: Path) -> None:
    """Load a weights file that must hold exactly `model`'s tensors (a training checkpoint of this model): nothing
    missing, nothing left over, every shape the model's."""
    mapped, report = map_checkpoint(model, read_weights(path), str(path))
    if report.newly_initialised or report.unused:
        found = "; ".join(f"{what}: {summarise(names)}" for what, names in (
            ("missing", [hf_name(name) for name in report.newly_initialised]), ("not the model's", report.unused))
            if names)
        raise CheckpointError(f"{path}: does not hold this model's weights ({found})")
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            tensor.copy_(mapped[name])


def save_pretrained(model: torch.nn.Module, folder: str | os.PathLike) -> None:
    """config.json + model.safetensors in Hugging Face naming; each file replaced atomically. A failed write (a
    full disk) leaves the folder's earlier files as they were, and no folder at all if it was new."""
    folder = Path(folder)
    try:
        with new_folder(folder):
            write_model_files(model, folder)
    except OSError as e:
        raise CheckpointError(f"{e.filename or folder}: cannot write the model ({(e.strerror or str(e)).lower()})") \
            from None
