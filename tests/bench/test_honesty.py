"""The rules that keep published speed figures honest: padding ceilings, quiet-round rejection, and a run that
publishes only when it is quiet and within its ceilings. No timing is asserted: other processes' CPU is scripted."""

from __future__ import annotations

import json

import pytest

import contention
import honesty
import run
import timing


def padded_case(gain: float, share: float = 0.44, contended: bool = False) -> dict:
    """An inference result whose minibert padding gain (twin time / mixed time) is `gain`."""
    real, padded = round(1000 * (1 - share)), 1000
    twin = [0.9 * gain, 1.0 * gain, 1.1 * gain]
    case = {"section": "inference", "name": "bert-base (32,128) synthetic lengths", "condition": "quiet",
            "padding": honesty.padding(real, padded), "seconds": {"minibert": [0.9, 1.0, 1.1], "minibert[twin]": twin,
                                                                  "transformers[sdpa,2t]": [2.0, 2.0, 2.0]},
            "timing": {"contended": contended}, "best": {"transformers": "transformers[sdpa,2t]"}}
    case["latency_ms"] = {name: 1000 * sorted(times)[1] for name, times in case["seconds"].items()}
    honesty.attach_padding_gain(case, "minibert", "minibert[twin]", ["transformers[sdpa,2t]"])
    return case


def test_ceiling_is_padded_over_real_tokens():
    assert honesty.padding(560, 1000)["ceiling"] == pytest.approx(1 / 0.56), "44% padding allows at most ~1.8x"
    assert honesty.padding(783, 1000)["share"] == pytest.approx(0.217)
    with pytest.raises(ValueError):
        honesty.padding(0, 10)


def test_a_gain_above_its_ceiling_is_a_violation_and_one_below_is_not():
    assert honesty.ceiling_violations([padded_case(gain=1.5)]) == [], "1.5x with 44% padding is possible"
    problems = honesty.ceiling_violations([padded_case(gain=2.95)])
    assert len(problems) == 1 and "above its ceiling 1.79x" in problems[0], problems


def test_ratio_ceiling_against_a_peer_scales_the_dense_ratio():
    case = padded_case(gain=1.5)
    # peer 2.0 s per batch, minibert's dense twin 1.5 s: dense ratio 1.33x, times the 1/0.56 padding ceiling
    assert case["ratio_ceilings"]["transformers[sdpa,2t]"] == pytest.approx(2.0 / 1.5 / 0.56, rel=1e-6)


@pytest.mark.parametrize("cases, status, stem", [
    ([padded_case(1.5)], 0, "cpu"),
    ([padded_case(1.5, contended=True)], 3, "cpu-contended"),
    ([padded_case(2.95)], 1, "cpu-failed"),
])
def test_publish_writes_the_publishable_file_only_from_a_quiet_run_within_its_ceilings(cases, status, stem, tmp_path):
    results = {"machine": {"device": "cpu", "date": "today", "cpu": "test CPU", "cores": 2, "cpu_capability": "AVX2",
                           "isa": ["avx2"], "threads": 2, "torch": "x", "python": "3", "onnxruntime": "y",
                           "transformers": "z"},
               "settings": {"full": False, "rounds": 3, "min_rounds": 3, "inference_dtype": "float32",
                            "conditions": ["quiet"], "synthetic_lengths": "", "memory_method": "", "timing_note": ""},
               "matmul": {"median_gflops": 1, "min_gflops": 1, "max_gflops": 1, "dtype": "float32", "size": 8},
               "complete": True, "cases": cases}
    assert run.publish(results, tmp_path, "cpu") == status
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == [f"{stem}.json", f"{stem}.md"], f"wrote {written}"
    text = (tmp_path / f"{stem}.md").read_text()
    assert ("NOT PUBLISHABLE" in text) == (status != 0), "the markdown must say whether it may be published"
    assert json.loads((tmp_path / f"{stem}.json").read_text())["problems"] == results["problems"]


class ScriptedCpu:
    """Stands for contention.ForeignCpu: each new sample reads the next scripted value of other processes' CPU."""
    script: list[float] = []

    def __init__(self):
        self.value = ScriptedCpu.script.pop(0) if ScriptedCpu.script else 0.0

    def cores(self, wall=None):
        return self.value

    def controlled_cores(self, wall=None):
        return 0.0


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setattr(timing, "ForeignCpu", ScriptedCpu)
    monkeypatch.setattr(timing, "wait_for_quiet", lambda max_wait_s: 0.0)
    return ScriptedCpu


def test_rounds_disturbed_by_other_processes_are_dropped(scripted):
    # warm-up (2 samples), then rounds of 2 samples: round 2 is disturbed by 0.9 of a core
    scripted.script = [0, 0] + [0.0, 0.05] + [0.9, 0.0] + [0.0, 0.0] + [0.1, 0.0]
    result = timing.interleaved_times({"a": lambda: None, "b": lambda: None}, lambda: None, rounds=3, min_rounds=2,
                                      min_sample_s=0.0)
    assert result.rounds_run == 4 and result.rounds_kept == 3, "the disturbed round should be replaced"
    assert not result.contended
    assert result.contention == pytest.approx([0.05, 0.9, 0.0, 0.1])


def test_a_case_without_enough_quiet_rounds_is_marked_contended(scripted):
    scripted.script = [0, 0] + [0.5, 0.0] * 10
    result = timing.interleaved_times({"a": lambda: None, "b": lambda: None}, lambda: None, rounds=3, min_rounds=2,
                                      budget_s=0.0, min_sample_s=0.0)
    assert result.contended and result.rounds_kept == result.rounds_run == 2, "contended rounds kept, and flagged"


def test_foreign_cpu_leaves_out_this_process_and_the_controlled_busy_process(monkeypatch):
    readings = {"machine": iter([100.0, 103.0]), "own": iter([10.0, 11.0])}
    monkeypatch.setattr(contention, "_machine_busy_seconds", lambda: next(readings["machine"]))
    monkeypatch.setattr(contention, "_own_cpu_seconds", lambda: next(readings["own"]))
    busy = {"before": 50.0}
    monkeypatch.setattr(contention, "process_cpu_seconds", lambda pid: busy["before"])
    monkeypatch.setattr(contention, "_CONTROLLED", {4242})
    cpu = contention.ForeignCpu()
    busy["before"] = 51.0  # our busy process used 1 s of the 3 s the machine was busy; this process 1 s
    assert cpu.controlled_cores(1.0) == pytest.approx(1.0)
    assert cpu.cores(1.0) == pytest.approx(1.0), "3 s busy - 1 s ours - 1 s our busy process = 1 core of others"
