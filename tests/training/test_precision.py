"""precision="auto" on simulated CPUs: an AVX2-only one (bf16 emulated) and one with native bf16 (AMX).

The simulations replace the probe's two timers with figures measured on real CPUs (in the comments), so the tests
check the decisions and what the run does with them, never a speed of the machine running the suite."""

import json
import os
import subprocess
import sys

import pytest
import torch
from synthetic_training import SyntheticPretraining, stack, tiny_model

from minibert.plumbing import machine
from minibert.pretraining.objective import PretrainingTask
from minibert.training import TrainingArguments, train
from minibert.training import precision as precision_module
from minibert.training.precision import PrecisionChoice, decide, probe, screen_rejects

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
# bf16 time / fp32 time, measured: a 2048x2048 product ran at 2 vs 227 GFLOP/s with the AVX2 limits and 2623 vs
# 344 GFLOP/s with AMX (Sapphire Rapids); a MiniLM step of 32x64 took 29-54 s vs 3.2-6.8 s on an AVX2-only AMD
# EPYC, 0.57 s vs 1.11 s with AMX.
SIMULATED = {"avx2": {"capability": "AVX2", "native": False, "product": 100.0, "step": 10.0},
             "amx": {"capability": "AVX512", "native": True, "product": 1 / 7.6, "step": 0.51}}


def simulate_cpu(monkeypatch, kind: str, fp32_step_s: float = 0.5, bf16_step_ratio: float | None = None) -> list:
    """Make the probe see CPU `kind`; returns the list of precisions whose step it timed."""
    cpu = SIMULATED[kind]
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: cpu["capability"])
    monkeypatch.setattr(machine, "_cpu_flag", lambda name: cpu["native"])
    if cpu["native"]:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    ratio = cpu["step"] if bf16_step_ratio is None else bf16_step_ratio
    timed = []

    def time_step(step, precision, device):
        step()  # the real step still runs: the probe must leave no trace of it
        timed.append(precision)
        seconds = fp32_step_s * (ratio if precision == "bf16" else 1.0)
        return seconds, seconds  # wall-clock, work

    monkeypatch.setattr(precision_module, "_time_step", time_step)
    monkeypatch.setattr(precision_module, "_time_products",
                        lambda model, device, tokens: {"fp32_s": 2e-4, "bf16_s": 2e-4 * cpu["product"]})
    return timed


def tiny_step():
    model, batch = tiny_model(), stack([SyntheticPretraining(4)[i] for i in range(4)])
    return model, lambda: PretrainingTask().loss_terms(model, batch)["mlm"][0].backward()


def arguments(folder, **overrides):
    settings = dict(learning_rate=1e-3, log_every=1, progress_bar=False, plot=False, per_device_batch_size=4,
                    max_steps=3)
    return TrainingArguments(str(folder), **{**settings, **overrides})


def losses(folder):
    return [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_the_decision_needs_a_clear_margin():
    assert decide(fp32_s=1.0, bf16_s=0.5), "bf16 twice as fast must be chosen"
    assert not decide(fp32_s=1.0, bf16_s=0.9), "bf16 only 1.1x faster must not be chosen (margin 1.2)"
    assert not decide(fp32_s=1.0, bf16_s=10.0), "bf16 ten times slower must not be chosen"
    assert screen_rejects(fp32_s=1e-4, bf16_s=1e-2), "emulated bf16 products (100x slower) must end the probe"
    assert not screen_rejects(fp32_s=1e-4, bf16_s=1.5e-4), "products 1.5x slower must still get a real step timed"


def test_avx2_only_cpu_gets_fp32_without_timing_a_bf16_step(monkeypatch):
    timed = simulate_cpu(monkeypatch, "avx2")
    model, step = tiny_step()
    choice = probe(step, model, torch.device("cpu"), tokens=64)
    assert choice.precision == "fp32", f"an AVX2-only CPU must train in fp32: {choice.line()}"
    assert timed == ["fp32"], f"a bf16 step costs ~10 fp32 steps on AVX2; the screen should have stopped it: {timed}"
    assert "AVX2" in choice.line() and "native bf16 no" in choice.line(), f"the line should say why: {choice.line()}"
    assert choice.seconds_per_step == 0.5, "the fp32 step time (for the expected duration) was lost"


def test_native_bf16_cpu_gets_bf16_when_its_step_is_faster(monkeypatch):
    timed = simulate_cpu(monkeypatch, "amx")
    model, step = tiny_step()
    choice = probe(step, model, torch.device("cpu"), tokens=64)
    assert choice.precision == "bf16", f"bf16 steps twice as fast must be chosen: {choice.line()}"
    assert timed == ["fp32", "bf16"], f"both steps should be timed: {timed}"
    assert "0.255 s of CPU time in bf16 vs 0.5 s in fp32" in choice.line(), f"both times belong in: {choice.line()}"
    assert "native bf16 yes" in choice.line(), choice.line()


def test_native_bf16_cpu_keeps_fp32_when_the_step_gains_too_little(monkeypatch):
    simulate_cpu(monkeypatch, "amx", bf16_step_ratio=0.95)  # e.g. a tiny model: overheads, not products
    model, step = tiny_step()
    choice = probe(step, model, torch.device("cpu"), tokens=64)
    assert choice.precision == "fp32", f"bf16 only 1.05x faster must keep fp32: {choice.line()}"
    assert "less than 1.2x faster" in choice.line(), choice.line()


def test_the_probe_leaves_weights_gradients_and_random_state_alone():
    model, step = tiny_step()
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    rng = torch.get_rng_state()
    model.eval()
    probe(step, model, torch.device("cpu"), tokens=64)  # the real timers, on the real machine
    assert torch.equal(torch.get_rng_state(), rng), "the probe moved torch's generator: dropout would differ"
    assert all(p.grad is None for p in model.parameters()), "the probe left gradients behind"
    assert all(torch.equal(p, weights[name]) for name, p in model.named_parameters()), "the probe changed weights"
    assert not model.training, "the probe should restore eval mode"


@pytest.mark.parametrize("kind, same_as", [("avx2", "fp32"), ("amx", "bf16")])
def test_a_run_with_auto_trains_exactly_as_the_chosen_precision(tmp_path, monkeypatch, capsys, kind, same_as):
    simulate_cpu(monkeypatch, kind)
    # Dropout on and masks drawn as examples are read: a probe that drew from the generators would show.
    data, dropout = SyntheticPretraining(16, dynamic=True), dict(hidden_dropout_prob=0.1)
    train(tiny_model(**dropout), PretrainingTask(), data, None, arguments(tmp_path / "auto", precision="auto"), stack)
    line = capsys.readouterr().err
    train(tiny_model(**dropout), PretrainingTask(), data, None, arguments(tmp_path / same_as, precision=same_as),
          stack)
    assert f"precision auto -> {same_as}" in line, f"the run should say what it chose: {line!r}"
    assert "3 steps: about" in line, f"the line should give the expected duration: {line!r}"
    assert losses(tmp_path / "auto") == losses(tmp_path / same_as), (
        f"auto on a simulated {kind} CPU should train exactly as {same_as} (the probe must leave no trace)")


def test_explicit_precisions_are_not_probed(tmp_path, monkeypatch, capsys):
    timed = simulate_cpu(monkeypatch, "amx")
    train(tiny_model(), PretrainingTask(), SyntheticPretraining(8), None, arguments(tmp_path, max_steps=1), stack)
    assert timed == [] and "precision auto" not in capsys.readouterr().err, "fp32 asked by name was probed"


def test_precision_choice_line():
    choice = PrecisionChoice("fp32", "because", {"fp32": 0.25})
    assert choice.line() == "precision auto -> fp32: because" and choice.seconds_per_step == 0.25


PROBE_IN_SUBPROCESS = """
import torch
from minibert.config import BertConfig
from minibert.model import BertForSequenceClassification
from minibert.training.precision import probe
torch.set_num_threads(1)
torch.manual_seed(0)
config = BertConfig(vocab_size=1000, hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=1024)
model = BertForSequenceClassification(config)
ids = torch.randint(5, 1000, (8, 64))
step = lambda: model(input_ids=ids, labels=torch.zeros(8, dtype=torch.long)).loss.backward()
print(probe(step, model, torch.device("cpu"), tokens=ids.numel()).line())
"""


def test_auto_picks_fp32_on_a_real_avx2_only_cpu():
    """The AVX2 limits in the environment make torch and oneDNN run as on an AVX2-only CPU, for real."""
    env = {**os.environ, **AVX2_ENV}
    done = subprocess.run([sys.executable, "-c", PROBE_IN_SUBPROCESS], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "precision auto -> fp32" in done.stdout, f"bf16 is emulated with AVX2 only: {done.stdout}"
    assert "CPU capability AVX2, native bf16 no" in done.stdout, done.stdout


def test_finetune_and_pretrain_commands_accept_auto():
    from minibert.cli.main import build_parser
    finetune = build_parser().parse_args(["finetune", "model", "--task", "classification", "--train", "t.csv",
                                          "-o", "out", "--precision", "auto"])
    pretrain = build_parser().parse_args(["pretrain", "--data", "d", "--preset", "tiny", "-o", "out",
                                          "--precision", "auto"])
    assert finetune.precision == pretrain.precision == "auto", "--precision auto was not accepted"
    assert pretrain.threads == finetune.threads == "auto", "--threads should default to auto"
