"""The machine's facts that every published figure names, and the thread rule minibert's commands follow.

Both come from `minibert.plumbing.machine` (the CPU model, the usable cores, the rule `automatic_threads`: torch
gets the cores that other processes leave free, at least one, so that with a core busy elsewhere torch does not split each
operation over a thread that waits whole time slices for its core). What is added here is the benchmarks' own: the
other processes' load measured as contention.py measures it (the benchmarks' busy cores are tracked and controlled
there), the instruction sets and the peers' versions that a results file records.
"""

from __future__ import annotations

import os
import platform

import torch

from contention import others_busy_cores
from minibert.plumbing.machine import automatic_threads, cpu_model, usable_cores

__all__ = ["auto_threads", "cpu_model", "describe", "facts", "usable_cores"]


def auto_threads(cores: int | None = None) -> int:
    """minibert's rule with every usable core counted (no physical-core cap), measured now over a short window."""
    cores = cores or usable_cores()
    return automatic_threads(cores, others_busy_cores(), cores)


def facts() -> dict:
    """CPU model, the instruction sets torch's and oneDNN's kernels can use, core count, library versions."""
    cpu = torch.cpu
    flags = {"avx2": "_is_avx2_supported", "avx512": "_is_avx512_supported", "vnni": "_is_vnni_supported",
             "avx512_bf16": "_is_avx512_bf16_supported", "amx": "_is_amx_tile_supported"}
    isa = [name for name, probe in flags.items() if hasattr(cpu, probe) and getattr(cpu, probe)()]
    info = {"cpu": cpu_model(), "cores": usable_cores(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "isa": isa, "python": platform.python_version(), "torch": torch.__version__,
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default")}
    for package in ("transformers", "onnxruntime", "onnx"):
        try:
            info[package] = __import__(package).__version__
        except ImportError:
            info[package] = None
    return info


def describe(info: dict) -> str:
    """One line: the CPU and what it can do."""
    return (f"{info['cpu']} ({info['cores']} cores), torch CPU capability {info['cpu_capability']}, "
            f"instructions {'/'.join(info['isa']) or 'none detected'}")
