"""Where the work runs: the machine's facts, which every published figure names, and how many threads torch uses.

Threads (`--threads N|auto` on every minibert command, auto by default). torch splits each operation over N
OpenMP threads (by default one per physical core) that wait for each other at its end. When another process
keeps a core busy, the thread that shares that core is descheduled for whole time slices and every operation
waits for it: on 2 cores with one other busy process, 2 threads ran a MiniLM training step several times slower
than 1 thread (README, "Precision and threads"). The automatic rule therefore measures how many cores other
processes keep busy, from /proc/stat over a short window while this process sleeps (a load average would count
this process's own earlier work and lags by a minute), and gives torch the cores left, at least one:

    threads = max(1, min(physical cores, cores - ceil(busy - 0.25)))

so a core counts as taken once others use more than a quarter of it; never more threads than physical cores
(torch's own default: two threads on the halves of one hyperthreaded core gain little for matrix products). An
OMP_NUM_THREADS in the environment is kept as the choice (torchrun sets 1 when it starts several processes on one
machine); where /proc/stat cannot be read, one thread per physical core. The choice is made once, when a command
starts: a run that lasts hours does not follow later changes in the machine's load.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

AUTO = "auto"
TAKEN_FROM = 0.25  # share of a core that other processes must use before it counts as taken
WINDOW_S = 0.25  # /proc/stat ticks 100 times a second: 25 ticks per core, a busy core reads 0.96-1.0
# ONEDNN_MAX_CPU_ISA values under which oneDNN may still use the CPU's bf16 instructions (oneDNN's ISA names).
BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX",
             "AVX10_1_512_AMX_FP16", "AVX10_2_512_AMX_2", "ALL", "DEFAULT")


# -- the machine's facts ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MachineFacts:
    """What a figure depends on. `describe()` is the line printed beside figures; `as_dict()` goes into JSON."""
    cpu: str  # model name as the OS reports it
    cores: int  # logical CPUs this process may run on
    cpu_capability: str  # torch.backends.cpu.get_cpu_capability(): the instruction set of torch's own kernels
    native_bf16: bool  # bf16 matrix instructions (AVX-512 BF16 or AMX) present and allowed to oneDNN
    threads: int  # torch.get_num_threads()
    torch: str
    precision: str | None = None  # of the figures beside which the facts are printed, when one applies

    def describe(self) -> str:
        facts = (f"{self.cpu}, {self.cores} core{'s' * (self.cores != 1)}, capability {self.cpu_capability}, "
                 f"native bf16 {'yes' if self.native_bf16 else 'no'}; {self.threads} "
                 f"thread{'s' * (self.threads != 1)}, torch {self.torch}")
        return facts + (f", precision {self.precision}" if self.precision else "")

    def as_dict(self) -> dict:
        return asdict(self)


def machine_facts(precision: str | None = None) -> MachineFacts:
    """The facts of this machine and process now (threads as currently set)."""
    return MachineFacts(cpu=cpu_model(), cores=usable_cores(), cpu_capability=torch.backends.cpu.get_cpu_capability(),
                        native_bf16=native_bf16(), threads=torch.get_num_threads(), torch=torch.__version__,
                        precision=precision)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def native_bf16() -> bool:
    """Whether bf16 matrix products run on bf16 hardware here: the CPU has AVX-512 BF16 or AMX, and oneDNN (which
    runs torch's bf16 products on CPU) is allowed to use them (ONEDNN_MAX_CPU_ISA can forbid it)."""
    hardware = _cpu_flag("avx512_bf16") or _cpu_flag("amx_bf16")
    isa_limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    return hardware and isa_limit in BF16_ISAS


def _cpu_flag(name: str) -> bool:
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.8
    if capabilities is not None:
        return bool(capabilities().get(name, False))
    try:
        return any(line.startswith("flags") and name in line.split()
                   for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines())
    except OSError:
        return False


# -- threads ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str

    def line(self) -> str:
        return f"threads {self.threads}: {self.reason}"


def parse_threads(text: str) -> int | str:
    """`--threads` values: "auto" or a positive integer; a ValueError otherwise."""
    if text == AUTO:
        return AUTO
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"threads: expected a positive integer or {AUTO}, got {text!r}")
    return int(text)


def physical_cores() -> int:
    """Physical cores this process may use: torch's default thread count."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.8
    physical = capabilities().get("num_physical_cores") if capabilities is not None else None
    return min(usable_cores(), physical or usable_cores())


def automatic_threads(cores: int, others_busy: float, physical: int) -> int:
    """The rule (module docstring): the cores other processes leave free, within the physical cores, at least one."""
    taken = max(0, math.ceil(others_busy - TAKEN_FROM))
    return max(1, min(physical, cores - taken))


def others_busy_cores(window_s: float = WINDOW_S, stat: Path = Path("/proc/stat")) -> float | None:
    """Cores' worth of CPU time that other processes (and the hypervisor: steal time) used on this process's CPUs
    over `window_s`, while this process slept; None where /proc/stat is missing or unreadable."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    before, own_before = _cpu_ticks(stat, cpus), time.process_time()
    if before is None:
        return None
    time.sleep(window_s)
    after, own = _cpu_ticks(stat, cpus), time.process_time() - own_before
    if after is None:
        return None
    busy, total = after[0] - before[0], after[1] - before[1]
    if total <= 0:
        return None
    cores = len(cpus) if cpus else os.cpu_count() or 1
    elapsed_s = total / cores / os.sysconf("SC_CLK_TCK")
    return max(0.0, (busy / os.sysconf("SC_CLK_TCK") - own) / elapsed_s)


def _cpu_ticks(stat: Path, cpus: set[int] | None) -> tuple[int, int] | None:
    """(busy, total) clock ticks summed over `cpus` (all when None): busy is user, nice, system, irq, softirq and
    steal; total adds idle and iowait."""
    try:
        lines = stat.read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit()) or (cpus is not None and int(name[3:]) not in cpus):
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in (fields + ["0"] * 8)[:8])
        busy += user + nice + system + irq + softirq + steal
        total += user + nice + system + irq + softirq + steal + idle + iowait
    return (busy, total) if total else None


def choose_threads(requested: int | str = AUTO, stat: Path = Path("/proc/stat")) -> ThreadChoice:
    """The thread count for `requested` ("auto" or a number) and why; changes nothing (see set_threads)."""
    if requested != AUTO:
        return ThreadChoice(int(requested), "as asked (--threads)")
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return ThreadChoice(int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS is set in the environment")
    cores, physical = usable_cores(), physical_cores()
    if physical == 1:
        return ThreadChoice(1, "one core")
    busy = others_busy_cores(stat=stat)
    if busy is None:
        return ThreadChoice(physical, "one per physical core (no /proc/stat to see other processes' use)")
    return ThreadChoice(automatic_threads(cores, busy, physical),
                        f"other processes kept {busy:.1f} of {cores} cores busy over {WINDOW_S:g} s (a thread that "
                        f"shares a busy core holds up the others)")


def set_threads(requested: int | str = AUTO) -> ThreadChoice:
    """Choose (see choose_threads) and apply torch's intra-op thread count; returns the choice."""
    choice = choose_threads(requested)
    torch.set_num_threads(choice.threads)
    return choice
