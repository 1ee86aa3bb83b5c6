"""ONNX Runtime as a peer: what a user who deploys a BERT on CPU is most likely to run instead of PyTorch.

From the same checkpoint the other contestants load: transformers' BertModel (eager attention, the form ORT's
fusion recognises) exported with `torch.onnx.export(..., dynamo=False, opset_version=17)` and dynamic batch and
sequence axes, then fused by `onnxruntime.transformers.optimizer.optimize_model(model_type="bert")` (one
Attention, SkipLayerNormalization, BiasGelu and EmbedLayerNormalization node where PyTorch runs several ops), and
for int8 `onnxruntime.quantization.quantize_dynamic` of the fused graph (int8 weights, activations quantized per
tensor at run time). Sessions use ORT's defaults apart from the thread count, which is set like torch's.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import transformers
from torch import nn

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state


class OnnxRuntimePeer:
    """Fused float32 and dynamic-int8 ONNX graphs of a checkpoint, and sessions over them by thread count."""

    def __init__(self, checkpoint: Path, config: transformers.BertConfig):
        import onnx
        import onnxruntime
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.transformers.optimizer import optimize_model
        self.ort, self.folder = onnxruntime, Path(tempfile.mkdtemp(prefix="minibert-ort-"))
        model = transformers.BertModel.from_pretrained(checkpoint, attn_implementation="eager").eval()
        ids = torch.randint(1000, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
        axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUT_NAMES, "last_hidden_state")}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Encoder(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                              str(self.folder / "exported.onnx"), dynamo=False, opset_version=17,
                              input_names=list(INPUT_NAMES), output_names=["last_hidden_state"], dynamic_axes=axes)
        fused = optimize_model(str(self.folder / "exported.onnx"), model_type="bert",
                               num_heads=config.num_attention_heads, hidden_size=config.hidden_size)
        self.fused_operators = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
        fused.save_model_to_file(str(self.folder / "float32.onnx"))
        quantize_dynamic(str(self.folder / "float32.onnx"), str(self.folder / "int8.onnx"),
                         weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        self.sessions: dict[tuple[str, int], object] = {}

    def session(self, precision: str, threads: int):
        if (precision, threads) not in self.sessions:
            options = self.ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            self.sessions[precision, threads] = self.ort.InferenceSession(
                str(self.folder / f"{precision}.onnx"), options, providers=["CPUExecutionProvider"])
        return self.sessions[precision, threads]

    def step(self, precision: str, threads: int, inputs: dict):
        session = self.session(precision, threads)
        feeds = {name: inputs[name].cpu().numpy() for name in INPUT_NAMES}
        return lambda: session.run(None, feeds)

    def last_hidden_state(self, precision: str, inputs: dict) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.step(precision, 1, inputs)()[0]))
