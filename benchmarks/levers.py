"""Speed levers in plain PyTorch, measured one at a time against the same baseline.

In-process variants of minibert (timed as contestants beside the others, in the same rounds):
- `minibert[plain]`: the reference model as loaded, no fast path;
- `minibert[qkv only]`: one Q/K/V product, weights not packed;
- `minibert[packed only]`: packed weights for short inputs, Q/K/V as three products;
- `minibert` itself is both (minibert.speed.fused_layers);
- `minibert[gelu fused]`: the fast path with the feed-forward's first product, bias and GELU in one oneDNN call;
- `minibert[Nt]`: the fast path with the other thread count (1 when quiet, all cores with one core busy).

Levers that need a process of their own (environment read at start-up, compiler caches) are in probe.py.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from minibert.speed.fused_layers import FusedQKVAttention, PackedLinear, prepare_for_inference
from minibert.model import EncoderLayer


def variants(plain: nn.Module) -> dict[str, nn.Module]:
    return {"minibert[plain]": plain, "minibert[qkv only]": _qkv_only(copy.deepcopy(plain)),
            "minibert[packed only]": _packed_only(copy.deepcopy(plain)),
            "minibert[gelu fused]": _gelu_fused(prepare_for_inference(copy.deepcopy(plain)))}


def _layers(model: nn.Module) -> list[EncoderLayer]:
    return [m for m in model.modules() if isinstance(m, EncoderLayer)]


def _qkv_only(model: nn.Module) -> nn.Module:
    for layer in _layers(model):
        layer.attention = FusedQKVAttention(layer.attention, lambda linear: linear)
    return model


def _packed_only(model: nn.Module) -> nn.Module:
    for layer in _layers(model):
        for parent in (layer.attention, layer.ffn):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, PackedLinear(child))
    return model


class GeluLinear(nn.Module):
    """GELU(x W^T + b) as one oneDNN call (bias and erf GELU applied while the output tile is in cache)."""

    def __init__(self, packed: PackedLinear):
        super().__init__()
        self.packed_weight, self.bias = packed.packed_weight, packed.bias

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "gelu", [], "none")


def _gelu_fused(model: nn.Module) -> nn.Module:
    for layer in _layers(model):
        layer.ffn.intermediate = GeluLinear(layer.ffn.intermediate)
        layer.ffn.activation = nn.Identity()
    return model
