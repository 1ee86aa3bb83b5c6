"""What differs between the CPU and the CUDA benchmark: precision, synchronisation, thread count."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Device:
    """cpu: float32 weights, `threads` intra-op threads. cuda: bfloat16 weights for inference (SDPA then picks its
    flash kernel wherever there is no mask), bfloat16 autocast over float32 weights for training."""
    type: str
    threads: int

    @property
    def torch(self) -> torch.device:
        return torch.device(self.type)

    @property
    def inference_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.type == "cuda" else torch.float32

    @property
    def matmul_size(self) -> int:
        return 8192 if self.type == "cuda" else 2048

    def setup(self) -> None:
        if self.type == "cuda":
            if not torch.cuda.is_available():
                raise SystemExit("--device cuda: no CUDA device is visible to torch")
            torch.backends.cuda.matmul.allow_tf32 = True
        else:
            torch.set_num_threads(self.threads)

    def sync(self) -> None:
        if self.type == "cuda":
            torch.cuda.synchronize()

    def training_autocast(self) -> contextlib.AbstractContextManager:
        if self.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def bf16_autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.type, dtype=torch.bfloat16)
