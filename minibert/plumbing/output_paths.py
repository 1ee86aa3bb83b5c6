"""Outputs that would destroy what they are made from, refused before any work: an output that is one of the
command's inputs (`predict -i x -o x`), that holds one, or that would replace an existing model or tokenizer
folder (`train-tokenizer --output MODEL`); and output folders reached through a symbolic link that a run did not
make (a planted `final -> elsewhere`), which minibert would otherwise write, or clear, through the link.

Paths are compared as the files they name (a hard link, `./x` and `dir/../x` are the same file as `x`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from minibert.errors import InputError

# What makes a folder a model or tokenizer folder (the files transformers and minibert read from it).
MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "tokenizer_config.json",
               "vocab.txt")

PathLike = str | os.PathLike


def same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` name one file or folder (both existing: the same inode; else the same resolved path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies under it."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def local_inputs(inputs: Iterable[object]) -> list[Path]:
    """The inputs that are paths on this machine: not a hub id such as bert-base-uncased, nor an object (a
    tokenizer or config passed as itself)."""
    return [Path(item) for item in inputs if isinstance(item, (str, os.PathLike)) and Path(item).exists()]


def check_file_spares_inputs(output: PathLike, flag: str, inputs: Iterable[PathLike | None]) -> None:
    """An output file must not be an input file, an existing file inside an input folder (a part of a model), or
    a model's or tokenizer's file."""
    output = Path(output)
    for item in local_inputs(inputs):
        if item.is_dir() and output.exists() and inside(output, item):
            raise InputError(f"{flag} {output} would replace a file of the input {item}; give another file name")
        if not item.is_dir() and same_file(output, item):
            raise InputError(f"{flag} {output} is the input {item}; writing it would destroy what is read; give "
                             "another file name")
    if output.name in MODEL_FILES and output.is_file() and model_files(output.parent):
        raise InputError(f"{flag} {output} is a file of the model or tokenizer in {output.parent}; give another "
                         "file name")


def check_folder_spares_inputs(folder: PathLike, flag: str, inputs: Iterable[PathLike | None],
                               writes: Iterable[str], overwrite_flag: str | None = None,
                               overwrite: bool = False) -> None:
    """An output folder, whose entries `writes` the command writes (replacing them), must not hold an input among
    those entries, nor be an input folder unless `overwrite` (the command's `overwrite_flag`) says to write there."""
    folder = Path(folder)
    targets = [folder / name for name in writes]
    for item in local_inputs(inputs):
        if item.is_dir() and same_file(folder, item) and not overwrite:
            raise InputError(f"{flag} {folder} is the input {item}{_remedy(overwrite_flag)}")
        for target in targets:
            if inside(item, target):
                raise InputError(f"{flag} {folder}: writing {target.name} there would replace the input {item}; "
                                 "give another folder")


def model_files(folder: Path) -> list[str]:
    """The model and tokenizer files in `folder`."""
    return [name for name in MODEL_FILES if (folder / name).is_file()]


def check_not_a_model_folder(folder: PathLike, flag: str, overwrite_flag: str | None = None,
                             overwrite: bool = False) -> None:
    """An existing model or tokenizer folder is not an output unless `overwrite` (the command's `overwrite_flag`,
    if it has one) says to write into it."""
    folder = Path(folder)
    found = model_files(folder) if folder.is_dir() else []
    if found and not overwrite:
        raise InputError(f"{flag} {folder} is a model or tokenizer folder (it holds {', '.join(found)})"
                         f"{_remedy(overwrite_flag)}")


def _remedy(overwrite_flag: str | None) -> str:
    return f"; give another folder, or {overwrite_flag} to write into it" if overwrite_flag else \
        "; give another folder"


def check_no_links(folder: PathLike, names: Iterable[str]) -> None:
    """The entries `names` of an output folder, which the command makes, fills or clears itself, must not be
    symbolic links: through a planted `final -> elsewhere` a run would write (or delete) elsewhere. (The folder
    itself may be a link: that is the path the user gave.)"""
    folder = Path(folder)
    for name in names:
        path = folder / name
        if path.is_symlink():
            raise InputError(f"{path} is a symbolic link (to {os.readlink(path)}); minibert does not write through "
                             "links in an output folder: remove it, or give another folder")
