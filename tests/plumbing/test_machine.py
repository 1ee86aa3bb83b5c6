"""The machine's facts and the thread rule, on simulated quiet and busy machines (a fake /proc/stat)."""

import argparse

import pytest
import torch

from minibert.plumbing import machine
from minibert.cli.main import COMMANDS, build_parser, main


def fake_stat(tmp_path, monkeypatch, busy_ticks: list[int], window_ticks: int = 25):
    """A /proc/stat whose per-CPU busy ticks grow by busy_ticks[i] (of window_ticks) while the probe sleeps."""
    path = tmp_path / "stat"

    def write(busy: list[int]) -> None:
        lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
        # columns: user nice system idle iowait irq softirq steal guest guest_nice
        lines += [f"cpu{i} {1000 + b} 5 300 {5000 + (elapsed - b)} 7 0 2 0 0 0" for i, b in enumerate(busy)]
        path.write_text("\n".join(lines + ["intr 1 2 3", "ctxt 99"]) + "\n")

    elapsed = 0
    write([0] * len(busy_ticks))
    elapsed = window_ticks
    monkeypatch.setattr(machine.time, "sleep", lambda s: write(busy_ticks))
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: set(range(len(busy_ticks))))
    monkeypatch.setattr(machine.time, "process_time", lambda: 0.0)  # this process used no CPU meanwhile
    monkeypatch.setattr(machine.os, "sysconf", lambda name: 100)  # USER_HZ
    return path


@pytest.mark.parametrize("busy_ticks, expected", [([0, 1], 0.04), ([25, 0], 1.0), ([25, 25], 2.0), ([10, 5], 0.6)])
def test_other_processes_cpu_use_is_read_from_proc_stat(tmp_path, monkeypatch, busy_ticks, expected):
    stat = fake_stat(tmp_path, monkeypatch, busy_ticks)
    busy = machine.others_busy_cores(stat=stat)
    assert busy == pytest.approx(expected, abs=1e-9), f"{busy_ticks} busy ticks of 25 per CPU should read {expected}"


def test_this_process_own_cpu_time_is_not_counted_as_others(tmp_path, monkeypatch):
    stat = fake_stat(tmp_path, monkeypatch, [25, 0])
    clock = iter([0.0, 0.25])  # this process ran a whole core for the window
    monkeypatch.setattr(machine.time, "process_time", lambda: next(clock))
    assert machine.others_busy_cores(stat=stat) == pytest.approx(0.0), "our own work was taken for another's"


def test_only_this_process_cpus_are_counted(tmp_path, monkeypatch):
    stat = fake_stat(tmp_path, monkeypatch, [25, 0])
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: {1})  # we may only run on cpu1, which is free
    assert machine.others_busy_cores(stat=stat) == pytest.approx(0.0), "a CPU outside the affinity mask was counted"


def test_a_missing_proc_stat_reads_as_unknown(tmp_path):
    assert machine.others_busy_cores(window_s=0.0, stat=tmp_path / "none") is None


@pytest.mark.parametrize("cores, busy, physical, expected", [
    (2, 0.0, 2, 2),    # quiet machine: every core
    (2, 0.2, 2, 2),    # background noise does not take a core
    (2, 0.3, 2, 1),    # a core a third busy is taken
    (2, 1.0, 2, 1),    # one busy process on 2 cores: 1 thread
    (2, 2.0, 2, 1),    # never fewer than one
    (16, 3.5, 16, 12),
    (16, 0.0, 8, 8),   # not above the physical cores (torch's default)
])
def test_the_thread_rule(cores, busy, physical, expected):
    assert machine.automatic_threads(cores, busy, physical) == expected, (
        f"{cores} cores ({physical} physical) with {busy} busy should give {expected} threads")


@pytest.mark.parametrize("busy_ticks, threads", [([0, 1], 2), ([25, 0], 1)], ids=["quiet", "busy"])
def test_auto_threads_on_a_simulated_two_core_machine(tmp_path, monkeypatch, busy_ticks, threads):
    stat = fake_stat(tmp_path, monkeypatch, busy_ticks)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(machine, "physical_cores", lambda: 2)
    choice = machine.choose_threads("auto", stat=stat)
    assert choice.threads == threads, f"{choice.line()}"
    assert "of 2 cores busy" in choice.reason, f"the reason should give the measurement: {choice.line()}"


def test_omp_num_threads_and_explicit_counts_are_kept(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert machine.choose_threads("auto").threads == 3, "OMP_NUM_THREADS (torchrun sets it) should be kept"
    assert machine.choose_threads(5).threads == 5, "--threads 5 should give 5"


def test_the_real_proc_stat_reads_within_the_cores():
    busy = machine.others_busy_cores(window_s=0.05)
    assert busy is None or 0.0 <= busy <= machine.usable_cores() + 0.5, f"{busy} busy cores of {machine.usable_cores()}"


def test_every_command_takes_threads_and_applies_it():
    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in COMMANDS:
        assert "--threads" in subcommands[name]._option_string_actions, f"minibert {name} has no --threads"
    before = torch.get_num_threads()
    try:
        assert main(["fill-mask", "--threads", "3", "/no/such/model", "a [MASK]"]) == 2
        assert torch.get_num_threads() == 3, "--threads 3 was not applied"
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_thread_counts_are_one_line_errors(value, capsys):
    assert main(["fill-mask", "--threads", value, "model", "a [MASK]"]) == 2, "a bad --threads should exit 2"
    assert f"--threads: expected a positive integer or auto, got '{value}'" in capsys.readouterr().err


def test_machine_facts_name_what_a_figure_depends_on(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    facts = machine.machine_facts("fp32")
    line = facts.describe()
    for part in (machine.cpu_model(), "capability AVX2", "native bf16 no", f"{torch.get_num_threads()} thread",
                 "precision fp32", torch.__version__):
        assert part in line, f"{part!r} missing from {line!r}"
    assert facts.as_dict()["cpu_capability"] == "AVX2" and facts.as_dict()["native_bf16"] is False


def test_native_bf16_needs_the_instructions_and_onednn_allowed_to_use_them(monkeypatch):
    monkeypatch.setattr(machine, "_cpu_flag", lambda name: name == "amx_bf16")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert machine.native_bf16(), "AMX present and no ISA limit: native bf16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not machine.native_bf16(), "ONEDNN_MAX_CPU_ISA=AVX2 forbids oneDNN the bf16 instructions"
    monkeypatch.setattr(machine, "_cpu_flag", lambda name: False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert not machine.native_bf16(), "an AVX2-only CPU has no native bf16"
