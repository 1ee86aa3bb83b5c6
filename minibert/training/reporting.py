"""What a run reports as it goes: metrics.jsonl (one JSON object per line), and a progress bar or log lines."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from minibert.plumbing.atomic_files import atomic_write_text, temp_name

from tqdm.auto import tqdm  # always there: huggingface_hub, a runtime dependency, requires it


class MetricsLog:
    """Appends records to output_dir/metrics.jsonl. A resumed run keeps the records up to the checkpoint's step
    and drops the later ones, which the resumed run writes again. A fresh run over an earlier run's file writes to
    a temporary file beside it, which replaces the earlier history only when the new run's first checkpoint is
    committed (`commit`): until then the folder's checkpoint and metrics still belong together."""

    def __init__(self, path: Path, resumed_step: int | None):
        self.target = path
        if resumed_step is not None:
            kept = [line for line in self.read(path) if line["step"] <= resumed_step]
            atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in kept))
            self.path = path
        else:
            self.path = path.parent / temp_name(path.name) if path.exists() else path
            self.path.write_text("", encoding="utf-8")

    def commit(self) -> None:
        """Make this run's records the folder's metrics.jsonl (called as its first checkpoint is committed)."""
        if self.path != self.target:
            os.replace(self.path, self.target)
            self.path = self.target

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
        return records

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _short(record: dict[str, Any]) -> str:
    shown = {"loss": record.get("loss"), "lr": record.get("lr"), "tok/s": record.get("tokens_per_s"),
             **{k: v for k, v in record.items() if k.startswith("eval_")}}
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) and math.isfinite(v) else f"{k}={v}"
                    for k, v in shown.items() if v is not None)


class Progress:
    """A tqdm bar over optimizer steps showing loss and throughput; or, with progress_bar=False, a line on stderr
    every `log_every` steps (with the evaluation's metrics when there was one); nothing on ranks other than 0."""

    def __init__(self, enabled: bool, bar: bool, total: int, initial: int, log_every: int):
        self.enabled, self.total, self.log_every = enabled, total, log_every
        self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True) if enabled and bar else None

    def update(self, record: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(_short(record), refresh=False)
        elif self.enabled and record["step"] % self.log_every == 0:
            print(f"step {record['step']}/{self.total} {_short(record)}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
