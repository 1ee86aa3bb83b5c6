"""compare(): did pretraining help? The pretrained model, the same architecture from random initialisation and
any reference checkpoints are fine-tuned alike on one task, over paired seeds and a learning-rate grid; each
arm's rate is chosen on validation, and the test scores at the chosen rates are compared seed by seed.

    comparison = compare("runs/pretrain/final", "classification", "reviews.csv", "runs/compare",
                         data=DataSpec(where={"source": "rotten_tomatoes"}), max_length=64, num_epochs=3)
    comparison.summary["margins"]["pretrained - random init"]   # per seed, mean, sd, 95% interval, verdict

The steps, each in its own module: splits.py (test / validation / train, written to OUT/splits/), arms.py (the
random-init copies), runs.py (the fine-tuning runs, reused when finished with the same settings, `jobs` at a
time), stats.py (learning-rate choice, mean ± sd, paired margins with their t-interval), baseline.py (TF-IDF +
logistic regression) and report.py (the table, OUT/results.json, OUT/comparison.png).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from minibert.comparison import arms as arms_
from minibert.comparison.baseline import check_available, tfidf_baseline
from minibert.comparison.report import Comparison, machine_record, plot_comparison, write_results
from minibert.comparison.runs import RunSpec, SharedSettings, plan, run_all, run_folder, run_key
from minibert.comparison.splits import (make_splits, split_files, split_texts, texts_fingerprint, write_split_texts,
                                        written_data_spec)
from minibert.comparison.stats import choose_learning_rate, mean_and_sd, paired_margin
from minibert.errors import MinibertError, spelled
from minibert.finetuning.kinds import TaskKind, task_kind
from minibert.finetuning.reinit import check_reinit_layers
from minibert.finetuning.run import DataSpec
from minibert.plumbing.output_lock import output_lock
from minibert.training.args import TrainingArguments
from minibert.training.run_folder import check_writable

logger = logging.getLogger("minibert")

DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_LEARNING_RATES = (1e-4, 3e-4, 1e-3)
BASELINES = ("tfidf", "none")
# Fine-tuning settings the comparison fixes for every run: the final model is compared (no checkpoint chosen on
# validation), evaluated once at the end unless asked, quietly unless asked (several jobs: always quietly).
FIXED = {"keep_best_metric": None, "early_stopping_patience": None, "overwrite_output_dir": True,
         "resume": False, "plot": False}
OWN = ("learning_rate", "seed", "output_dir")  # a run's own settings: the grid's


def compare(pretrained: str | os.PathLike, task: str, train_data: str | os.PathLike, output_dir: str | os.PathLike,
            *, references: Sequence[str] = (), test_data: str | os.PathLike | None = None,
            test_fraction: float = 0.1, split_seed: int = 0, labelled: int | None = None,
            validation_fraction: float = 0.1, data: DataSpec = DataSpec(), seeds: Sequence[int] = DEFAULT_SEEDS,
            learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES, baseline: str = "tfidf",
            pooling: str | None = None, reinit_layers: int = 0, jobs: int = 1, max_length: int = 128,
            doc_stride: int | None = None, rerun_changed: bool = False, echo: Callable[[str], None] | None = None,
            **training: Any) -> Comparison:
    """Compare `pretrained` with random init (and `references`: paths or NAME=PATH) on `task` (see the module
    docstring and splits.py for the data; `pooling`, `reinit_layers` and `training`, TrainingArguments fields, are
    finetune's and apply to every run). Finished runs in `output_dir` with the same settings are reused; runs with
    other settings are refused unless `rerun_changed`. `echo` receives a line as each run finishes (e.g. print)."""
    kind = task_kind(task)
    check_choices(kind, data, seeds, learning_rates, baseline, pooling, reinit_layers, jobs)
    with_baseline = baseline == "tfidf" and check_available(kind)
    training = shared_training(training, jobs)
    arm_list = arms_.arms(pretrained, list(references))
    fingerprints = arms_.fingerprints(arm_list)  # and every checkpoint found, before any work
    arms_.check_layers(arm_list, reinit_layers)
    output_dir = Path(output_dir)
    check_writable(output_dir)
    with output_lock(output_dir):
        splits = make_splits(kind, train_data, data, test_data=test_data, test_fraction=test_fraction,
                             split_seed=split_seed, labelled=labelled, validation_fraction=validation_fraction)
        texts, files = split_texts(kind, splits), split_files(kind, output_dir / "splits")
        shared = SharedSettings(kind.name, {name: str(path) for name, path in files.items()},
                                written_data_spec(kind, splits), max_length, doc_stride, pooling, reinit_layers,
                                training)
        # Decide what to run before anything in output_dir changes: a refused comparison leaves it as it was.
        staged = arms_.stage_random_inits(pretrained, output_dir, seeds)
        try:
            specs = run_specs(arm_list, fingerprints, staged, output_dir, seeds, learning_rates, shared,
                              texts_fingerprint(texts))
            todo, reused = plan(specs, rerun_changed)
        except BaseException:
            arms_.discard(staged)
            raise
        arms_.place_random_inits(staged, output_dir)
        write_split_texts(files, texts)
        if echo is not None and reused:
            echo(f"reusing {len(reused)} finished run(s) with these settings in {output_dir / 'runs'}")
        records = reused + run_all(todo, shared, jobs, lambda record: echo and echo(run_line(record, kind)))
        summary = summarise(kind, specs, records, seeds, learning_rates)
        summary["baseline"] = tfidf_baseline(kind, splits.train, splits.validation, splits.test) \
            if with_baseline else None
        settings = settings_record(pretrained, references, task, train_data, test_data, test_fraction, split_seed,
                                   labelled, validation_fraction, data, seeds, learning_rates, baseline, shared, jobs)
        comparison = Comparison(output_dir, kind.main_metric, splits.sizes(), ordered(records, specs), summary,
                                machine_record(training["precision"], jobs))
        write_results(comparison, settings)
        comparison.plot = plot_comparison(comparison, output_dir / "comparison.png")
    return comparison


def check_choices(kind: TaskKind, data: DataSpec, seeds: Sequence[int], learning_rates: Sequence[float],
                  baseline: str, pooling: str | None, reinit_layers: int, jobs: int) -> None:
    """The comparison's own settings, refused in one line before any work."""
    check_grid(seeds, learning_rates)
    check_reinit_layers(reinit_layers)
    if data.glue_task is not None:
        raise MinibertError(f"compare reads tables, CoNLL and SQuAD files; for GLUE TSVs give --format tsv and the "
                            f"task's columns instead of {spelled('glue_task')}")
    if baseline not in BASELINES:
        raise MinibertError(f"{spelled('baseline')} must be one of {', '.join(BASELINES)}, got {baseline!r}")
    if pooling is not None and kind.name not in ("classification", "regression"):
        raise MinibertError(f"{spelled('pooling')} applies to classification and regression heads, not {kind.name}")
    if not isinstance(jobs, int) or jobs < 1:
        raise MinibertError(f"{spelled('jobs')} must be a positive integer, got {jobs!r}")


def check_grid(seeds: Sequence[int], learning_rates: Sequence[float]) -> None:
    if not seeds or len(set(seeds)) != len(seeds) or any(not isinstance(s, int) or s < 0 for s in seeds):
        raise MinibertError(f"{spelled('seeds')} must be distinct integers >= 0, got {list(seeds)}")
    if not learning_rates or len(set(learning_rates)) != len(learning_rates) or \
            any(not rate > 0 for rate in learning_rates):
        raise MinibertError(f"{spelled('learning_rates')} must be distinct positive numbers, got "
                            f"{list(learning_rates)}")


def shared_training(training: dict[str, Any], jobs: int) -> dict[str, Any]:
    """The TrainingArguments fields every run shares, checked now (a bad value fails before any run), with the
    comparison's fixed settings; evaluation once, at the end, unless asked; precision "auto" decided once for the
    whole comparison (bf16 where this CPU has it natively), so that every arm trains in the same precision."""
    own = [name for name in OWN if name in training]
    if own:
        raise MinibertError(f"compare: {own[0]} is set per run (the grid: seeds, learning_rates, output_dir)")
    training = {"eval_every": 0, "precision": "fp32", "progress_bar": None, **training, **FIXED}
    if jobs > 1:  # several runs' progress bars would overwrite each other
        training["progress_bar"] = None
    if training.get("precision") == "auto":
        from minibert.plumbing.machine import native_bf16
        training["precision"] = "bf16" if native_bf16() else "fp32"
        logger.warning("precision auto -> %s for every run (%s native bf16 on this CPU)", training["precision"],
                       "with" if training["precision"] == "bf16" else "no")
    try:
        TrainingArguments(output_dir="unused", **training)
    except TypeError as error:
        raise MinibertError(f"compare: {error}") from None
    return training


def run_specs(arm_list: list[arms_.Arm], fingerprints: dict[str, str], staged_random_inits: dict[int, Path],
              output_dir: Path, seeds: Sequence[int], learning_rates: Sequence[float], shared: SharedSettings,
              splits_sha256: str) -> list[RunSpec]:
    """Every run, arm by arm, rate by rate, seed by seed; a random-init run keyed on its seed's staged copy and
    reading it where it will be put."""
    specs = []
    for arm in arm_list:
        for seed in seeds:
            checkpoint, fingerprint = arm.checkpoint, fingerprints.get(arm.name)
            if checkpoint is None:
                checkpoint = str(arms_.random_init_folder(output_dir, seed))
                fingerprint = arms_.checkpoint_fingerprint(staged_random_inits[seed])
            for rate in learning_rates:
                folder = str(run_folder(output_dir, arm.slug, rate, seed))
                specs.append(RunSpec(arm.name, checkpoint, seed, rate, folder,
                                     run_key(fingerprint, splits_sha256, seed, rate, shared)))
    return specs


def ordered(records: list[dict[str, Any]], specs: Sequence[RunSpec]) -> list[dict[str, Any]]:
    """Records in the specs' order (parallel runs finish in any order)."""
    by_run = {(r["arm"], r["learning_rate"], r["seed"]): r for r in records}
    return [by_run[(s.arm, s.learning_rate, s.seed)] for s in specs]


def summarise(kind: TaskKind, specs: Sequence[RunSpec], records: list[dict[str, Any]], seeds: Sequence[int],
              learning_rates: Sequence[float]) -> dict[str, Any]:
    """Per arm: validation mean per rate, the rate chosen on it, the test score per seed at that rate, mean and
    sd; then the paired margins of the pretrained arm over each other arm."""
    run = {(r["arm"], r["learning_rate"], r["seed"]): r for r in records}
    arm_names = list(dict.fromkeys(spec.arm for spec in specs))
    per_arm = {arm: arm_summary(arm, run, kind.main_metric, seeds, learning_rates) for arm in arm_names}
    first = arm_names[0]
    margins = {f"{first} - {other}": paired_margin(per_arm[first]["test"], per_arm[other]["test"]).as_dict()
               for other in arm_names[1:]}
    return {"metric": kind.main_metric, "seeds": list(seeds), "arms": per_arm, "margins": margins}


def arm_summary(arm: str, run: dict[tuple, dict[str, Any]], metric: str, seeds: Sequence[int],
                learning_rates: Sequence[float]) -> dict[str, Any]:
    """The rate with the best mean validation score (a diverged run scores NaN, so its rate is never chosen
    while another rate trained), and the test scores at it."""
    def validation(rate: float, seed: int) -> float:
        record = run[(arm, rate, seed)]
        return record["validation"][metric] if record["validation"] is not None else math.nan

    by_rate = {rate: [validation(rate, seed) for seed in seeds] for rate in learning_rates}
    chosen = choose_learning_rate(by_rate)
    diverged = [seed for seed in seeds if run[(arm, chosen, seed)]["test"] is None]
    if diverged:
        raise MinibertError(f"{arm}: fine-tuning diverged at every learning rate for seed {diverged[0]} (a "
                            f"non-finite loss); try lower {spelled('learning_rates')}")
    test = [run[(arm, chosen, seed)]["test"][metric] for seed in seeds]
    mean, sd = mean_and_sd(test)
    return {"learning_rate": chosen, "validation_mean_by_rate": {f"{rate:g}": mean_and_sd(values)[0]
                                                                 for rate, values in by_rate.items()},
            "test": test, "mean": mean, "sd": sd}


def run_line(record: dict[str, Any], kind: TaskKind) -> str:
    metric = kind.main_metric
    if record["validation"] is None:
        return (f"{record['arm']}, lr {record['learning_rate']:g}, seed {record['seed']}: diverged "
                f"({record['diverged']})")
    return (f"{record['arm']}, lr {record['learning_rate']:g}, seed {record['seed']}: validation {metric} "
            f"{record['validation'][metric]:.4f}, test {record['test'][metric]:.4f} ({record['seconds']:.0f} s)")


def settings_record(pretrained, references, task, train_data, test_data, test_fraction, split_seed, labelled,
                    validation_fraction, data: DataSpec, seeds, learning_rates, baseline, shared: SharedSettings,
                    jobs: int) -> dict[str, Any]:
    return {"pretrained": located(pretrained), "references": [located(r) for r in references], "task": task,
            "train_data": located(train_data), "test_data": None if test_data is None else located(test_data),
            "test_fraction": None if test_data is not None else test_fraction, "split_seed": split_seed,
            "labelled": labelled, "validation_fraction": validation_fraction,
            "data": {"text_column": data.text_column, "pair_column": data.pair_column,
                     "label_column": data.label_column, "format": data.format,
                     "where": dict(data.where) if data.where else None, "encoding": data.encoding},
            "seeds": list(seeds), "learning_rates": list(learning_rates), "baseline": baseline,
            "pooling": shared.pooling, "reinit_layers": shared.reinit_layers, "max_length": shared.max_length,
            "doc_stride": shared.doc_stride,
            "training": shared.training, "jobs": jobs, "split_files": shared.files}


def located(source: str | os.PathLike) -> str:
    """A file or folder as an absolute path, so that results.json means the same read from anywhere; a hub id, a
    hub: dataset or a NAME=PATH reference as given."""
    path = Path(source)
    return str(path.resolve()) if path.exists() else str(source)


__all__ = ["Comparison", "compare"]
