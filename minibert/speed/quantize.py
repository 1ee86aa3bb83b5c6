"""int8 inference, opt-in: `minibert embed --int8`, `minibert predict --int8`, or in Python

    model = prepare_for_inference(BertModel.from_pretrained(folder), int8=True)   # minibert.speed.fused_layers

What is quantized: the six matrix products of every encoder layer (query, key, value, attention output, the two
feed-forward layers), which are nearly all of an encoder's arithmetic. Embeddings, LayerNorms, softmax, the pooler
and task heads stay float32.

How: each weight matrix gets one scale per output channel (row), each input one scale per token (row), both
symmetric int8, the input's computed at run time:

    y = (round(x / s_x) @ round(W / s_W)^T) * s_x * s_W + b        s_x = max|x_t| / 127 per token t

Why per token: BERT's hidden states carry a few features of much larger magnitude than the rest, different from
token to token. One scale for the whole input (torch.ao's dynamic quantization, ONNX Runtime's dynamic int8) spends
the 8 bits on them: on real MiniLM weights and rotten_tomatoes sentences that gives mean-pooled embeddings at cosine
0.93 (per-tensor weights) to 0.97 (per-channel weights) of float32, where per-token scales give 0.997
(tests/speed/test_quantize.py holds it to >= 0.99).

Kernel: oneDNN's int8 matrix product (`torch.ops.onednn.qlinear_pointwise`, weights packed once at quantization),
which uses AMX or VNNI instructions where the CPU has them; `torch._int_mm` where oneDNN's op is missing. The
per-token scale cannot be handed to oneDNN (it takes one input scale), so the product runs with scale 1 and the
token scales are applied to its float32 output.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

QMAX = 127  # symmetric int8: [-127, 127], so that negation never overflows


def quantize_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per row: (M, K) float -> (M, K) int8 and (M, 1) float scales, x ~= q * scale.

    Written for memory traffic, which is what this costs beside an int8 product: the row maxima come from two
    reading passes (max and min) instead of abs() and max(), and the scaling is one multiplication and an in-place
    rounding (measured 1.4x faster than abs/amax/div/round on a (1024, 3072) input)."""
    peak = torch.maximum(x.amax(dim=-1, keepdim=True), x.amin(dim=-1, keepdim=True).neg_())  # (M, 1): max |x|
    scale = peak.clamp_(min=1e-12).div_(QMAX)  # an all-zero row stays zero
    return torch.mul(x, scale.reciprocal()).round_().to(torch.int8), scale


class Int8Linear(nn.Module):
    """A frozen nn.Linear computing in int8 (see the module docstring)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float()
        qweight, scale = quantize_rows(weight)  # (N, K) int8, (N, 1)
        self.register_buffer("weight_scale", scale.squeeze(1))  # (N,)
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(self.out_features)
        self.register_buffer("bias", bias)
        self.kernel = "onednn" if _onednn_int8_available() else "int_mm"
        if self.kernel == "onednn":
            self.packed_weight = torch.ops.onednn.qlinear_prepack(qweight, None)  # oneDNN's own layout
            self.register_buffer("weight_zero_points", torch.zeros(self.out_features, dtype=torch.long))
        else:
            self.packed_weight = qweight.t().contiguous()  # (K, N), as _int_mm takes it

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        qx, x_scale = quantize_rows(x.reshape(-1, self.in_features).float())  # (M, K) int8, (M, 1)
        if self.kernel == "onednn":
            # int32 accumulation times the weights' scales, in float32: (M, K) @ (K, N) -> (M, N)
            y = torch.ops.onednn.qlinear_pointwise(qx, 1.0, 0, self.packed_weight, self.weight_scale,
                                                   self.weight_zero_points, None, 1.0, 0, torch.float32,
                                                   "none", [], "")
            y = torch.addcmul(self.bias, y, x_scale, out=y)  # * s_x per token, + b, in place
        else:
            y = torch._int_mm(qx, self.packed_weight).float().mul_(self.weight_scale)  # (M, K) @ (K, N) -> (M, N)
            y = torch.addcmul(self.bias, y, x_scale, out=y)
        return y.to(x.dtype).view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kernel={self.kernel}"


def _onednn_int8_available() -> bool:
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops, "onednn")
            and hasattr(torch.ops.onednn, "qlinear_pointwise") and hasattr(torch.ops.onednn, "qlinear_prepack"))
