"""Padding removal: where a padded (B, T) batch keeps its real tokens, and the one place that turns an
attention_mask into what attention and the dense layers need.

This is speed machinery, kept out of model.py's reading path: model.py only calls `layout.pack`, `layout.unpack`
and `layout.additive_mask`. When `config.unpad` is on and a batch has padding, the dense layers (projections,
feed-forward, norms) run on the N real tokens only, and attention alone sees the padded (B, T) layout; a batch
that is half padding then costs about half. The results are the same as the padded computation's at real tokens
(tests hold the two paths to each other and to transformers).
"""

from __future__ import annotations

import torch
from torch import Tensor


class TokenLayout:
    """Where a padded (B, T) batch keeps its real tokens.

    Hidden states travel between layers as a flat (N, D) matrix of the N real tokens when `unpad` is on and the
    batch has padding; otherwise they keep their (B, T, D) shape and packing does nothing (an exported ONNX graph
    then has the 3-D matrix products that ONNX Runtime's BERT fusions look for).
    """

    def __init__(self, attention_mask: Tensor | None, batch: int, tokens: int, unpad: bool):
        self.batch, self.tokens = batch, tokens
        # Under torch.compile or ONNX export (tracing), branching on the mask's values or packing to a
        # data-dependent N would break the graph: the mask is then always applied and the padded layout kept.
        compiling = torch.compiler.is_compiling() or torch.jit.is_tracing()
        has_padding = attention_mask is not None and (compiling or not bool(attention_mask.all()))
        self.key_is_real = attention_mask.bool() if has_padding else None  # (B, T)
        # Flat positions of real tokens in the (B*T) grid, or None when every position is kept.
        self.real_positions = (self.key_is_real.flatten().nonzero().squeeze(1)
                               if has_padding and unpad and not compiling else None)
        self._masks: dict[torch.dtype, Tensor] = {}

    def pack(self, x: Tensor) -> Tensor:
        """(B, T, ...) -> (N, ...), or unchanged when every position is kept."""
        if self.real_positions is None:
            return x
        return x.flatten(0, 1).index_select(0, self.real_positions)  # (B, T, ...) -> (B*T, ...) -> (N, ...)

    def unpack(self, x: Tensor) -> Tensor:
        """(N, ...) -> (B, T, ...), zeros at padded positions; a (B, T, ...) input comes back unchanged."""
        if self.real_positions is None:
            return x
        grid = x.new_zeros((self.batch * self.tokens, *x.shape[1:]))
        x = grid.index_copy(0, self.real_positions, x)  # (N, ...) -> (B*T, ...)
        return x.view(self.batch, self.tokens, *x.shape[1:])  # (B*T, ...) -> (B, T, ...)

    def additive_mask(self, dtype: torch.dtype) -> Tensor | None:
        """(B, 1, 1, T): 0 on real keys, the dtype's most negative value on padded keys (as transformers does),
        broadcast over heads and queries. Padded queries attend normally; their outputs are never read.
        Written as BERT's original `(1 - mask) * min`, the pattern ONNX Runtime recognises when it fuses an
        exported graph's attention."""
        if self.key_is_real is None:
            return None
        if dtype not in self._masks:
            is_real = self.key_is_real.unsqueeze(1).unsqueeze(2).to(dtype)  # (B, T) -> (B, 1, 1, T)
            self._masks[dtype] = (1.0 - is_real) * torch.finfo(dtype).min
        return self._masks[dtype]
