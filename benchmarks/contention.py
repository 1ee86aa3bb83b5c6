"""Other processes' CPU use, measured around every timed sample, and a controlled busy core.

A figure is published only from quiet rounds. Every sample is bracketed by two readings of /proc/stat (the busy
time of all cores, hypervisor steal included) and of this process's own CPU time; the difference is the CPU other
processes used during the sample, in cores. A round in which any sample saw more than QUIET_CORES of it is
discarded (timing.interleaved_times), and a case left with too few quiet rounds is marked contended, which keeps
the whole run from being published (honesty.publication_problems).

"One core busy" is not left to chance: BusyCore starts a process that spins on one core for as long as the
condition lasts. Its CPU is known (/proc/<pid>/stat), so it is not counted as foreign: during a one-core-busy
round, any *other* process's CPU still disqualifies the round.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

QUIET_CORES = 0.15  # most CPU, in cores, that other processes may use during a kept sample
_CONTROLLED: set[int] = set()  # pids of this benchmark's own busy processes
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot (user, nice, system, irq, softirq, steal), or None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _TICK


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of process `pid` (0.0 once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15 of proc(5))


class ForeignCpu:
    """CPU used since creation by other processes (not this one, not our own busy processes), and by ours."""

    def __init__(self):
        self.start = time.perf_counter()
        self.busy, self.own = _machine_busy_seconds(), _own_cpu_seconds()
        self.controlled = {pid: process_cpu_seconds(pid) for pid in _CONTROLLED}

    def controlled_cores(self, wall: float | None = None) -> float:
        """Cores our own busy processes used (0 when there are none)."""
        wall = wall if wall is not None else time.perf_counter() - self.start
        used = sum(process_cpu_seconds(pid) - before for pid, before in self.controlled.items())
        return max(used, 0.0) / max(wall, 1e-9)

    def cores(self, wall: float | None = None) -> float:
        """Cores other processes used; 0.0 where /proc/stat cannot be read (not Linux)."""
        wall = wall if wall is not None else time.perf_counter() - self.start
        if self.busy is None:
            return 0.0
        foreign = (_machine_busy_seconds() - self.busy) - (_own_cpu_seconds() - self.own)
        return max(foreign / max(wall, 1e-9) - self.controlled_cores(wall), 0.0)


def wait_for_quiet(max_wait_s: float, window_s: float = 0.5) -> float:
    """Sleep until other processes use at most QUIET_CORES over a window, or `max_wait_s` passed; returns seconds
    waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_wait_s:
        cpu = ForeignCpu()
        time.sleep(window_s)
        if cpu.cores(window_s) <= QUIET_CORES:
            break
    return time.perf_counter() - start


def others_busy_cores(window_s: float = 0.3) -> float:
    """Cores used by processes other than this one over a short window (our busy processes count here: this is
    what a program deciding its thread count would see)."""
    start, busy, own = time.perf_counter(), _machine_busy_seconds(), _own_cpu_seconds()
    time.sleep(window_s)
    if busy is None:
        return 0.0
    wall = time.perf_counter() - start
    return max((_machine_busy_seconds() - busy) - (_own_cpu_seconds() - own), 0.0) / wall


# A loop of pure arithmetic: the same load on every machine, no memory traffic to blur the comparison.
SPIN = "while True:\n    pass\n"


class BusyCore:
    """`with BusyCore():` one other process keeps one core busy. Its CPU is tracked and not counted as foreign."""

    def __init__(self, cpu: int | None = None):
        self.cpu, self.process = cpu, None  # cpu: pin the spinner to this core (affinity levers)

    def __enter__(self) -> "BusyCore":
        self.process = subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL)
        if self.cpu is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(self.process.pid, {self.cpu})
        _CONTROLLED.add(self.process.pid)
        time.sleep(0.3)  # let it reach the scheduler's steady state
        return self

    def __exit__(self, *exc) -> None:
        _CONTROLLED.discard(self.process.pid)
        self.process.kill()
        self.process.wait()
