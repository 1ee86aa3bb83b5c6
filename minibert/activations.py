"""The one registry of `hidden_act` names (transformers' ACT2FN for the names BERT checkpoints use).

Its own module because two others need it and neither should import the other for it: config.py checks a name
against it, model.py's feed-forward looks its function up. BERT uses the exact erf GELU (Hendrycks & Gimpel 2016);
the tanh form ("gelu_new") differs by up to ~5e-4.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}
