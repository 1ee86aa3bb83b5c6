"""The CPU inference fast path: the same model, rearranged for speed once its weights are final.

    model = prepare_for_inference(BertModel.from_pretrained(folder))              # float32, same answers
    model = prepare_for_inference(BertModel.from_pretrained(folder), int8=True)   # int8 (minibert.speed.quantize)

`minibert embed` and `minibert predict` apply it; `model.py` stays the readable reference, and tests hold this path
to it. Two changes, each measured in benchmarks/ (results/cpu.md, "levers"):

- One product for Q, K and V: the three (D, D) projections of a layer become one (D, 3D) product, and the padded
  (B, T) layout that attention needs is rebuilt once instead of three times.
- Pre-packed weights for short inputs: a float32 matrix product first copies its weight into the blocked layout
  the CPU kernel reads, on every call. With few rows (batch 1, short texts) that copy costs as much as the
  product; packing each weight once for oneDNN (`torch.ops.mkldnn._reorder_linear_weight`, what torch.compile's
  freezing does) measured 2x faster at 8 rows, 1.3x at 32 and 1.05-1.1x up to ~200, and 7% slower at 1,024,
  so products with more than PACKED_MAX_ROWS rows keep the plain kernel. With int8, the weights are quantized and
  packed for oneDNN instead (minibert.speed.quantize.Int8Linear).

The result is for inference only: the packed products have no gradient (a backward pass through them raises).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minibert.model import EncoderLayer, SelfAttention, attention
from minibert.speed.unpadding import TokenLayout
from minibert.speed.quantize import Int8Linear

PACKED_MAX_ROWS = 256  # above this many rows the plain kernel is as fast (see the module docstring)
PACKING_HINT_ROWS = 32  # the row count oneDNN's layout is chosen for; any count works (32: batch-1 text lengths)


def prepare_for_inference(model: nn.Module, int8: bool = False) -> nn.Module:
    """Rearrange `model` in place for CPU inference (see the module docstring) and return it in eval mode.
    A model on another device or in another dtype than float32 is returned unchanged (apart from eval())."""
    model.eval()
    if _device_and_dtype(model) != (torch.device("cpu"), torch.float32):
        return model
    packed = Int8Linear if int8 else _packed_linear
    for layer in (m for m in model.modules() if isinstance(m, EncoderLayer)):
        layer.attention = FusedQKVAttention(layer.attention, packed)
        layer.ffn.intermediate = packed(layer.ffn.intermediate)
        layer.ffn.output = packed(layer.ffn.output)
    return model


def _device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


def _packed_linear(linear: nn.Linear) -> nn.Module:
    return PackedLinear(linear) if torch.backends.mkldnn.is_available() else linear


class PackedLinear(nn.Module):
    """nn.Linear whose weight is also kept packed for oneDNN, used for inputs of at most PACKED_MAX_ROWS rows."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", linear.weight.detach().contiguous())
        bias = linear.bias if linear.bias is not None else torch.zeros(self.out_features)
        self.register_buffer("bias", bias.detach().contiguous())
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(self.weight, PACKING_HINT_ROWS)

    def forward(self, x: Tensor) -> Tensor:
        if x.numel() > PACKED_MAX_ROWS * self.in_features:
            return F.linear(x, self.weight, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed for oneDNN"


class FusedQKVAttention(nn.Module):
    """SelfAttention with its query, key and value projections as one product; the same attention() after it."""

    def __init__(self, original: SelfAttention, packed):
        super().__init__()
        self.heads, self.head_size = original.heads, original.head_size
        self.implementation = original.implementation
        qkv = nn.Linear(original.query.in_features, 3 * original.query.out_features)
        with torch.no_grad():  # rows [Q; K; V]: one (D, 3D) weight
            qkv.weight.copy_(torch.cat([original.query.weight, original.key.weight, original.value.weight]))
            qkv.bias.copy_(torch.cat([original.query.bias, original.key.bias, original.value.bias]))
        self.qkv, self.output = packed(qkv), packed(original.output)

    def forward(self, x: Tensor, layout: TokenLayout, return_probs: bool = False) -> tuple[Tensor, Tensor | None]:
        qkv = layout.unpack(self.qkv(x))  # (N, D) -> (N, 3D) -> (B, T, 3D)
        qkv = qkv.view(layout.batch, layout.tokens, 3, self.heads, self.head_size)  # (B, T, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, Dh)
        mask = layout.additive_mask(q.dtype)
        out, probs = attention(q, k, v, mask, 0.0, self.implementation, return_probs, self.head_size)
        out = out.transpose(1, 2).reshape(layout.batch, layout.tokens, -1)  # (B, H, T, Dh) -> (B, T, D)
        return self.output(layout.pack(out)), probs  # (B, T, D) -> (N, D)
