"""The machine's facts that every published figure names, and the thread rule minibert's commands follow.

Both are small local versions of what belongs in the library (another change adds `minibert.runtime` with machine
facts and `--threads auto`); they should become one. The rule: torch gets the cores that other processes leave
free, at least one, so that with a core busy elsewhere torch does not split each operation over a thread that
waits whole time slices for its core.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

import torch

from contention import others_busy_cores

TAKEN_FROM = 0.25  # share of a core other processes must use before it counts as taken


def auto_threads(cores: int | None = None) -> int:
    """max(1, cores - cores other processes keep busy), measured now over a short window."""
    cores = cores or usable_cores()
    return max(1, min(cores, cores - math.ceil(others_busy_cores() - TAKEN_FROM)))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
