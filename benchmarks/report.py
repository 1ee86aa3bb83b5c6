"""Results: the machine description, the targets, and the JSON and markdown files the README includes."""

from __future__ import annotations

import datetime
import json
import operator
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers

from device import Device


def machine(device: Device) -> dict:
    info = {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": device.type, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ----------------------------------------------------------------------------------------------------------------
# Targets: which number of which case is held to what.
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    case: str
    metric: str  # a key of the case's result: ratio, latency_ratio, matmul_fraction, memory_ratio
    comparison: str  # ">=" or "<="
    value: float

    def met(self, result: dict) -> bool | None:
        actual = result.get(self.metric)
        if not isinstance(actual, (int, float)):
            return None
        return {">=": operator.ge, "<=": operator.le}[self.comparison](actual, self.value)

    def describe(self) -> str:
        return f"{self.comparison} {_format_metric(self.metric, self.value)}"


TARGETS = [
    Target("inference bert-base (1,32) dense", "latency_ratio", "<=", 1.0),
    Target("inference bert-base (8,128) dense", "ratio", ">=", 1.0),
    Target("inference bert-base (8,128) dense", "matmul_fraction", ">=", 0.85),
    Target("inference bert-base (32,128) mixed", "ratio", ">=", 1.7),
    Target("pretraining tiny (32,128)", "ratio", ">=", 2.0),
    Target("pretraining tiny (32,128)", "memory_ratio", "<=", 0.8),
    Target("pretraining bert-base (8,128)", "ratio", ">=", 1.25),
    Target("pretraining bert-base (8,128)", "memory_ratio", "<=", 0.8),
    Target("fine-tuning MiniLM-L6 rotten_tomatoes, file order", "ratio", ">=", 1.5),
]


def attach_targets(results: list[dict]) -> None:
    """Set {"targets": [{metric, target, met}]} on each targeted case."""
    by_name = {r["name"]: r for r in results}
    for result in results:
        result.pop("targets", None)
    for target in TARGETS:
        if target.case in by_name:
            result = by_name[target.case]
            result.setdefault("targets", []).append(
                {"metric": target.metric, "target": target.describe(), "met": target.met(result)})


# ----------------------------------------------------------------------------------------------------------------
# Writing.
# ----------------------------------------------------------------------------------------------------------------
def write(results: dict, folder: Path, stem: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown(results), encoding="utf-8")
    return json_path, md_path


def markdown(results: dict) -> str:
    m, s = results["machine"], results["settings"]
    mm = results["matmul"]
    lines = [
        f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores{', ' + m['gpu'] if 'gpu' in m else ''}), "
        f"{m['threads']} threads, torch {m['torch']}, transformers {m['transformers']}, Python {m['python']}"
        f"{', quick mode' if s['quick'] else ''}{'' if results['complete'] else ', INCOMPLETE RUN'}. Matrix-multiply rate: {mm['median_gflops']:.0f} GFLOP/s "
        f"(median {mm['dtype']} {mm['size']}x{mm['size']} mm; range {mm['min_gflops']:.0f}-{mm['max_gflops']:.0f}).",
        "",
        "| case | minibert | transformers (best setting) | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    for result in results["cases"]:
        lines += _rows(result)
    lines += ["", "Peak extra memory of one step (MiB):", "",
              "| case | minibert | transformers | ratio |", "|---|---|---|---|"]
    for result in results["cases"]:
        memory = result.get("memory_mib", {})
        if "minibert" in memory:
            best = result["transformers_setting"]
            lines.append(f"| {result['name']} | {memory['minibert']:.0f} | {memory[best]:.0f} "
                         f"({_setting(best)}) | {result['memory_ratio']:.2f}x |")
    lines += ["", "Notes:", ""] + [f"- {note}" for note in notes(results)] + [""]
    return "\n".join(lines)


def _rows(result: dict) -> list[str]:
    if "skipped" in result:
        return [f"| {result['name']} | skipped: {result['skipped']} | | | | |"]
    best = result["transformers_setting"]
    name = result["name"] + (" (contended)" if result.get("timing", {}).get("contended") else "")
    unit = "tok/s" if result["unit"] == "tokens" else "ex/s"
    targets = {t["metric"]: t for t in result.get("targets", [])}
    rows = [_row(name, f"{_rate(result['minibert'])} {unit}", f"{_rate(result['transformers'])} {unit} "
                 f"({_setting(best)})", f"{result['ratio']:.2f}x", targets.get("ratio"))]
    if "latency_ratio" in targets:
        rows.append(_row(result["name"] + ", latency", f"{result['latency_ms'][result['ours']]:.1f} ms",
                         f"{result['latency_ms'][best]:.1f} ms ({_setting(best)})",
                         f"{result['latency_ratio']:.2f}x", targets["latency_ratio"]))
    if "matmul_fraction" in targets:
        fractions = result["matmul_fractions"]
        rows.append(_row(result["name"] + ", share of matmul rate", f"{fractions[result['ours']]:.0%}",
                         f"{fractions[best]:.0%} ({_setting(best)})", "", targets["matmul_fraction"]))
    if "memory_ratio" in targets:
        memory = result.get("memory_mib", {})
        if "minibert" in memory:
            rows.append(_row(result["name"] + ", peak memory", f"{memory['minibert']:.0f} MiB",
                             f"{memory[best]:.0f} MiB ({_setting(best)})", f"{result['memory_ratio']:.2f}x",
                             targets["memory_ratio"]))
    if "compile_seconds" in result:
        rows[0] = rows[0].replace(f"| {name} |", f"| {name} (compile "
                                  f"{result['compile_seconds']:.0f} s, {result['compile_gain']:.2f}x over eager "
                                  f"minibert) |", 1)
    return rows


def _row(case: str, ours: str, theirs: str, ratio: str, target: dict | None) -> str:
    met = "" if target is None else {True: "yes", False: "**no**", None: "n/a"}[target["met"]]
    return f"| {case} | {ours} | {theirs} | {ratio} | {target['target'] if target else ''} | {met} |"


def _rate(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _setting(contestant: str) -> str:
    return contestant.removeprefix("transformers[").removesuffix("]")


def _format_metric(metric: str, value: float) -> str:
    return f"{value:.0%}" if metric == "matmul_fraction" else f"{value:.2f}x"


def notes(results: dict) -> list[str]:
    s = results["settings"]
    return [
        "Throughput counts real tokens only (examples for fine-tuning) and is the median over "
        f"{s['rounds']} interleaved rounds (at least {s['min_rounds']}, fewer when a case's time budget ran out) "
        "after a warm-up round; each round runs every contestant once, alternating direction. ratio = minibert / "
        "transformers throughput, the median of the per-round ratios (so it can differ slightly from the ratio of "
        "the two medians shown; both are in the JSON); latency and memory rows: minibert / transformers, lower is "
        "better.",
        "transformers runs with attn_implementation 'sdpa' and 'eager'; the faster of the two is compared.",
        f"Mixed lengths: {s['mixed_lengths']}.",
        f"FLOPs: {s['flop_formula']}. Share of matmul rate = model FLOP/s over the rate of the reference mm timed "
        "in the same rounds.",
        f"Memory: {s['memory_method']}.",
        f"Timing: {s['timing_note']}",
    ]
