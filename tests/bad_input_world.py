"""What test_bad_inputs.py's rows run against: tiny checkpoints, data files and finished runs, built once, and the
helpers each row uses (fingerprints of folders, a damaged copy of a run, a process holding a lock).

Everything here is small: a 2-layer, 32-wide model over a 36-token vocabulary, 64 training sentences, runs of 2
steps, so that a row costs a fraction of a second."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from minibert.cli.main import main
from minibert.config import BertConfig
from minibert.model import BertForMaskedLM
from minibert.tokenizer import BertTokenizer

from finetuning.test_run import TINY, VOCAB, classification_rows, make_checkpoint, write_csv

WORDS = ("the", "a", "film", "movie", "was", "is", "plot", "actor", "scene", "story", "very", "quite", "good",
         "bad", "alice", "bob", "paris", "london")


@dataclass
class World:
    root: Path
    encoder: Path  # BertModel (with pooler) + tokenizer: what fine-tuning starts from
    mlm: Path  # BertForMaskedLM + tokenizer (no pooler)
    config: Path  # config.json for pretraining from scratch, sized to VOCAB
    sentiment: Path  # 64 rows of text,label (pos/neg)
    corpus: Path  # 40 documents, BERT format
    data: Path  # the corpus prepared by `prepare-pretraining` (train/, eval/)
    pretrain_run: Path  # `pretrain --corpus` for 2 steps, a checkpoint at each
    finetune_run: Path  # `finetune` for 2 steps: checkpoints/, final/
    classifier: Path  # finetune_run/final: a folder `predict` takes

    def pretrain(self, output_dir: Path, *extra: str, data: Path | None = None) -> list[str]:
        """`minibert pretrain` on the prepared data, from scratch, quiet."""
        return ["pretrain", "--data", str(data or self.data), "--tokenizer", str(self.encoder), "--config",
                str(self.config), "--output-dir", str(output_dir), "--batch-size", "4", "--no-progress",
                "--log-every", "1000", *extra]

    def pretrain_corpus(self, output_dir: Path, *extra: str, corpus: Path | None = None) -> list[str]:
        return ["pretrain", "--corpus", str(corpus or self.corpus), "--tokenizer", str(self.encoder), "--config",
                str(self.config), "--output-dir", str(output_dir), "--max-seq-length", "32", "--dupe-factor", "1",
                "--eval-fraction", "0.2", "--batch-size", "4", "--no-progress", "--log-every", "1000", *extra]

    def finetune(self, output_dir: Path, *extra: str, train: Path | None = None, task: str = "classification",
                 model: Path | None = None) -> list[str]:
        return ["finetune", str(model or self.encoder), "--task", task, "--train", str(train or self.sentiment),
                "--output-dir", str(output_dir), "--batch-size", "16", "--lr", "2e-3", "--no-progress",
                "--log-every", "1000", *extra]

    def copy(self, folder: Path, tmp: Path, name: str | None = None) -> Path:
        """A copy of one of the world's folders, for a row that damages or extends it."""
        target = tmp / (name or folder.name)
        shutil.copytree(folder, target)
        return target


def corpus_text(documents: int = 40, seed: int = 0) -> str:
    rng, lines = random.Random(seed), []
    for _ in range(documents):
        for _ in range(3):
            lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))) + " .")
        lines.append("")
    return "\n".join(lines) + "\n"


def quietly(argv: list[str]) -> None:
    status = main(argv)
    assert status == 0, f"building the test world: minibert {' '.join(argv)} exited {status}"


def build_world(root: Path) -> World:
    encoder = make_checkpoint(root / "encoder")
    mlm = root / "mlm"
    torch.manual_seed(1)
    BertForMaskedLM(BertConfig(**TINY)).save_pretrained(mlm)
    BertTokenizer.from_pretrained(encoder).save_pretrained(mlm)
    config = root / "config.json"
    config.write_text(json.dumps({**TINY, "vocab_size": len(VOCAB)}), encoding="utf-8")
    sentiment = write_csv(root / "sentiment.csv", classification_rows(64))
    corpus = root / "corpus.txt"
    corpus.write_text(corpus_text(), encoding="utf-8")
    data = root / "data"
    quietly(["prepare-pretraining", str(corpus), "--tokenizer", str(encoder), "--output", str(data),
             "--max-seq-length", "32", "--dupe-factor", "1", "--eval-fraction", "0.2"])
    world = World(root, encoder, mlm, config, sentiment, corpus, data, root / "pretrain-run", root / "finetune-run",
                  root / "finetune-run" / "final")
    quietly(world.pretrain_corpus(world.pretrain_run, "--max-steps", "2", "--save-every", "1"))
    quietly(world.finetune(world.finetune_run, "--max-steps", "2", "--validation-fraction", "0.25"))
    return world


# -- what a row checks ------------------------------------------------------------------------------------------
def fingerprint(paths: list[Path]) -> dict[str, str]:
    """sha256 of every file under `paths` (and the names of the folders), to tell byte-identical from changed."""
    found: dict[str, str] = {}
    for path in paths:
        if path.is_file():
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            for item in sorted(path.rglob("*")):
                found[str(item)] = hashlib.sha256(item.read_bytes()).hexdigest() if item.is_file() else "dir"
        else:
            found[str(path)] = "missing"
    return found


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))


def temporaries(folder: Path) -> list[str]:
    """Temporary files or folders (see minibert.plumbing.atomic_files.temp_name) anywhere under `folder`."""
    return sorted(str(p) for p in folder.rglob("*") if ".tmp-" in p.name)


# -- real processes ---------------------------------------------------------------------------------------------
def minibert_process(*argv: str, **kwargs) -> subprocess.Popen:
    """A real `minibert` process, as a user's shell starts one: Ctrl-C (SIGINT) at its default even when the tests
    run in the background, where the shell leaves SIGINT ignored and children inherit that (the interrupt tests
    would then see a run that never stops)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "minibert", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_default, **kwargs)


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(condition, process: subprocess.Popen, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {process.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
