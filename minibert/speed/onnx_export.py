"""ONNX export, for deploying a minibert checkpoint with ONNX Runtime (`minibert export onnx MODEL OUT.onnx`).

    report = export_onnx(model, "model.onnx")   # checked before the file is written
    print(report.summary())

The graph is traced from the model's padded layout (no padding removal: its token count depends on the data) and
its readable attention path, which exports to the MatMul / Div / Add(mask) / Softmax pattern that ONNX Runtime's
BERT optimizer fuses into one Attention node per layer. Batch and sequence axes are dynamic. Before the file
replaces anything at OUT, two checks run:
- parity: ONNX Runtime runs the graph on a padded batch of another shape than the one traced, and every output is
  compared with minibert's own forward (padding removal and SDPA on) at real tokens;
- fusion: ONNX Runtime's BERT optimizer (`onnxruntime.transformers.optimizer`) is run on it and must fuse attention
  in every layer; `fused=` writes that optimized graph too, parity-checked the same way.

Needs `onnx` and `onnxruntime` (`pip install 'minibert[onnx]'`).
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from minibert.errors import MinibertError
from minibert.plumbing.atomic_files import atomic_path
from minibert.model import BertPreTrainedModel, SelfAttention

OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Each class's outputs, in order, and whether each has a token axis (B, T, ...) or only a batch axis (B, ...).
OUTPUTS: dict[str, tuple[tuple[str, bool], ...]] = {
    "BertModel": (("last_hidden_state", True), ("pooler_output", False)),
    "BertForPreTraining": (("prediction_logits", True), ("seq_relationship_logits", False)),
    "BertForMaskedLM": (("logits", True),),
    "BertForNextSentencePrediction": (("logits", False),),
    "BertForSequenceClassification": (("logits", False),),
    "BertForTokenClassification": (("logits", True),),
    "BertForQuestionAnswering": (("start_logits", True), ("end_logits", True)),
}
TOLERANCE = 1e-5


class ExportError(MinibertError):
    """The exported graph failed a check, or the ONNX tools are missing."""


@dataclass
class ExportReport:
    path: Path
    outputs: list[str]
    max_diff: dict[str, float]  # graph name ("exported", "fused") -> max |ORT - minibert| over all outputs
    fused_operators: dict[str, int] = field(default_factory=dict)  # ORT optimizer's counts, non-zero only
    layers: int = 0
    check_shape: tuple[int, int] = (0, 0)
    fused_path: Path | None = None

    @property
    def attention_fused_everywhere(self) -> bool:
        return self.fused_operators.get("Attention", 0) == self.layers

    def summary(self) -> str:
        fused = ", ".join(f"{name} {count}" for name, count in sorted(self.fused_operators.items()))
        diffs = ", ".join(f"{name} {diff:.1e}" for name, diff in self.max_diff.items())
        also = f"; ONNX Runtime's fused graph to {self.fused_path}" if self.fused_path else ""
        return (f"wrote {self.path}{also} (opset {OPSET}, inputs {', '.join(INPUTS)}; outputs "
                f"{', '.join(self.outputs)}; dynamic batch and sequence axes)\n"
                f"parity with minibert on a padded {self.check_shape} batch, max |diff| at real tokens: {diffs}\n"
                f"ONNX Runtime BERT fusion: attention fused in {self.fused_operators.get('Attention', 0)} of "
                f"{self.layers} layers ({fused})")


def export_onnx(model: BertPreTrainedModel, path: str | os.PathLike, fused: str | os.PathLike | None = None,
                tolerance: float = TOLERANCE) -> ExportReport:
    """Export `model` to `path` (and ORT's fused graph to `fused`), each written only after it passed parity."""
    onnx, ort, optimizer = _onnx_tools()
    name = type(model).__name__
    if name not in OUTPUTS:
        raise ExportError(f"cannot export {name}: expected one of {', '.join(OUTPUTS)}")
    outputs = [(n, per_token) for n, per_token in OUTPUTS[name] if n != "pooler_output" or model.pooler is not None]
    config = model.config
    report = ExportReport(Path(path), [n for n, _ in outputs], {}, layers=config.num_hidden_layers)
    with tempfile.TemporaryDirectory() as folder:
        traced = Path(folder) / "model.onnx"
        _trace(model, outputs, traced)
        onnx.checker.check_model(str(traced))
        inputs, expected, real = _check_batch(model, [n for n, _ in outputs])
        report.check_shape = tuple(inputs["input_ids"].shape)
        report.max_diff["exported"] = _max_diff(ort, traced, inputs, expected, real, outputs)
        optimized = optimizer.optimize_model(str(traced), model_type="bert", num_heads=config.num_attention_heads,
                                             hidden_size=config.hidden_size)
        report.fused_operators = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        if fused is not None:
            fused_file = Path(folder) / "fused.onnx"
            optimized.save_model_to_file(str(fused_file))
            report.max_diff["fused"] = _max_diff(ort, fused_file, inputs, expected, real, outputs)
        worst = max(report.max_diff.values())
        if not worst <= tolerance:  # also catches NaN
            raise ExportError(f"{path}: not written: ONNX Runtime's outputs differ from minibert's by {worst:.2e} "
                              f"(tolerance {tolerance:g})")
        _move(traced, Path(path))
        if fused is not None:
            _move(fused_file, Path(fused))
            report.fused_path = Path(fused)
    return report


def _onnx_tools():
    try:
        import onnx
        import onnxruntime
        from onnxruntime.transformers import optimizer
    except ImportError as e:
        raise ExportError(f"ONNX export needs onnx and onnxruntime ({e.name} is missing): "
                          "pip install 'minibert[onnx]'") from None
    return onnx, onnxruntime, optimizer


def _move(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.move(source, tmp)  # the temporary folder may be on another file system


# ----------------------------------------------------------------------------------------------------------------
# Tracing.
# ----------------------------------------------------------------------------------------------------------------
class _Outputs(nn.Module):
    """The model with positional inputs and a tuple of named outputs, as the tracer needs."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> tuple[Tensor, ...]:
        out = self.model(input_ids, attention_mask, token_type_ids)
        return tuple(getattr(out, name) for name in self.names)


def _export_copy(model: BertPreTrainedModel) -> BertPreTrainedModel:
    """float32, eval, padded layout, the readable attention path (whose ops ORT's fusion recognises)."""
    model = copy.deepcopy(model).cpu().float().eval()
    model.config.unpad, model.config.attn_implementation = False, "eager"
    for module in model.modules():
        if isinstance(module, SelfAttention):
            module.implementation = "eager"
    return model


def _trace(model: BertPreTrainedModel, outputs: list[tuple[str, bool]], path: Path) -> None:
    batch, tokens = 2, 7  # any shape: the axes are dynamic; padding in row 1 keeps the mask in the graph
    ids = torch.randint(1, model.config.vocab_size, (batch, tokens), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    axes.update({name: {0: "batch", 1: "sequence"} if per_token else {0: "batch"} for name, per_token in outputs})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        torch.onnx.export(_Outputs(_export_copy(model), [n for n, _ in outputs]),
                          (ids, mask, torch.zeros_like(ids)), str(path), dynamo=False, opset_version=OPSET,
                          input_names=list(INPUTS), output_names=[n for n, _ in outputs], dynamic_axes=axes)


# ----------------------------------------------------------------------------------------------------------------
# Checking.
# ----------------------------------------------------------------------------------------------------------------
def _check_batch(model: BertPreTrainedModel, names: list[str]) -> tuple[dict[str, Tensor], list[Tensor], Tensor]:
    """A padded batch of sentence pairs, shaped unlike the traced one, and minibert's outputs on it."""
    lengths = torch.tensor([11, 5, 8])
    tokens = int(lengths.max())
    generator = torch.Generator().manual_seed(1)
    real = torch.arange(tokens)[None, :] < lengths[:, None]  # (B, T)
    ids = torch.randint(1, model.config.vocab_size, real.shape, generator=generator).masked_fill(~real, 0)
    segments = ((torch.arange(tokens)[None, :] >= lengths[:, None] // 2) & real).long()  # [A A A B B B pad]
    segments = segments.clamp(max=model.config.type_vocab_size - 1)
    inputs = {"input_ids": ids, "attention_mask": real.long(), "token_type_ids": segments}
    reference = copy.deepcopy(model).cpu().float().eval()
    with torch.inference_mode():
        out = reference(**inputs)
    return inputs, [getattr(out, name) for name in names], real


def _max_diff(ort, path: Path, inputs: dict[str, Tensor], expected: list[Tensor], real: Tensor,
              outputs: list[tuple[str, bool]]) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([n for n, _ in outputs], {k: v.numpy() for k, v in inputs.items()})
    diffs = []
    for value, reference, (_, per_token) in zip(got, expected, outputs):
        value, reference = torch.from_numpy(np.asarray(value)), reference.float()
        if value.shape != reference.shape:
            raise ExportError(f"{path.name}: output of shape {tuple(value.shape)}, minibert's is "
                              f"{tuple(reference.shape)}")
        if per_token:
            value, reference = value[real], reference[real]  # padded positions are not meaningful
        diffs.append(float((value - reference).abs().max()))
    return max(diffs) if all(d == d for d in diffs) else float("nan")  # NaN, not hidden by max()
