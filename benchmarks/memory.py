"""Peak memory of one step: the extra memory a step needs beyond what stays resident (weights, optimizer state,
inputs). Activations, gradients and temporaries all count.

cpu: PyTorch's CPU allocator keeps no statistics (tracemalloc does not see it), so a fresh subprocess per case reads
the kernel's resident-set high-water mark. It builds the case, runs one warm-up step of each contestant (which also
creates AdamW's state), then for each contestant: resets the mark (5 > /proc/self/clear_refs), reads the resident
size, runs one step, and reports VmHWM minus that size. glibc is told to give every allocation of 64 KiB or more its
own mmap (MALLOC_MMAP_THRESHOLD_), so freed tensors go back to the kernel and reused heap pages cannot hide a peak.
cuda: torch.cuda.max_memory_allocated over one step minus memory_allocated before it, in the benchmark process.

Run as a script, this file is the probe: `memory.py '<json {spec, contestants, threads}>'` prints one JSON line.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from device import Device
from timing import Step

MIB = 2 ** 20
METHOD = {
    "cpu": "peak RSS increase over one step after a warm-up step (VmHWM after minus VmRSS before), fresh subprocess "
           "per case, glibc MALLOC_MMAP_THRESHOLD_=65536 so freed tensors are unmapped",
    "cuda": "torch.cuda.max_memory_allocated over one step minus memory_allocated before it",
}


def step_memory_mib(spec: dict, steps: dict[str, Step], contestants: list[str], device: Device
                    ) -> dict[str, float | str]:
    """Peak extra MiB of one step for each contestant, or {"error": why}. On cpu the case is rebuilt from `spec` in
    a subprocess; on cuda the given steps are run."""
    if device.type == "cuda":
        return {name: _cuda_peak_mib(steps[name], device) for name in contestants}
    return _cpu_probe(spec, contestants, device.threads)


def _cuda_peak_mib(step: Step, device: Device) -> float:
    step()  # warm-up: optimizer state, workspaces
    device.sync()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    device.sync()
    return (torch.cuda.max_memory_allocated() - before) / MIB


def _cpu_probe(spec: dict, contestants: list[str], threads: int) -> dict[str, float | str]:
    request = json.dumps({"spec": spec, "contestants": contestants, "threads": threads})
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    try:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), request], env=env,
                              capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return {"error": "memory probe timed out"}
    if done.returncode != 0:
        return {"error": f"memory probe failed: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------------------------
# The probe, in its own process.
# ----------------------------------------------------------------------------------------------------------------
def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _rss_peak_mib(step: Step) -> float:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _proc_status_kib("VmRSS")
    step()
    return (_proc_status_kib("VmHWM") - before) / 1024


def _probe(request: dict) -> dict[str, float]:
    from workloads import build_case
    device = Device("cpu", request["threads"])
    device.setup()
    implementations = tuple(name[len("transformers["):-1] for name in request["contestants"]
                            if name.startswith("transformers["))
    case = build_case(request["spec"], device, implementations)
    steps = case.steps
    for name in request["contestants"]:
        steps[name]()  # warm-up
    return {name: _rss_peak_mib(steps[name]) for name in request["contestants"]}


if __name__ == "__main__":
    print(json.dumps(_probe(json.loads(sys.argv[1]))))
