"""Commands that read many lines (`predict`, `embed`) work through them in chunks: a chunk is read, run and
written before the next is read, so memory stays the same whatever the number of lines. The output file is
written under a temporary name and renamed when complete (plumbing.atomic_files), so an interrupted run leaves no
half-written output; without an output file, results go to stdout as each chunk is done."""

from __future__ import annotations

import itertools
import json
import os
import struct
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable, Iterator, TypeVar

import numpy as np

from minibert.plumbing.atomic_files import atomic_path

Item = TypeVar("Item")

# Records per chunk, at least: enough for length-sorted batches to waste little on padding, few enough that a
# chunk's texts, features and results stay small (a few MB).
CHUNK = 2048


def chunks(items: Iterable[Item], batch_size: int) -> Iterator[list[Item]]:
    """`items` in lists of CHUNK (or 16 batches, if more), read lazily."""
    size = max(CHUNK, 16 * batch_size)
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


@contextmanager
def text_output(path: str | os.PathLike | None) -> Iterator[IO[str]]:
    """A text stream to `path` (UTF-8, put in place only if the block finishes), or stdout when None."""
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_path(Path(path)) as tmp, open(tmp, "w", encoding="utf-8") as file:
        yield file


class EmbeddingWriter:
    """Embeddings added chunk by chunk to an open binary file: a .npy matrix (`npy`), or JSON lines of
    {"text", "embedding"} with six decimals."""

    def __init__(self, file: IO[bytes], npy: bool):
        self.file, self.npy, self.rows, self.count, self.width = file, npy, None, 0, 0

    def add(self, texts: list[str], vectors: np.ndarray) -> None:
        if self.npy:
            self.rows = self.rows or NpyRows(self.file, vectors.shape[1])
            self.rows.append(vectors)
        else:
            self.file.write("".join(json.dumps({"text": text, "embedding": [round(x, 6) for x in vector]}) + "\n"
                                    for text, vector in zip(texts, vectors.tolist())).encode("utf-8"))
        self.count, self.width = self.count + len(texts), vectors.shape[1]

    def finish(self) -> None:
        if self.rows is not None:
            self.rows.finish()


class NpyRows:
    """Rows of float32 appended to an open .npy file whose row count is known only at the end: the header is
    written with room to spare and rewritten, same length, once the rows are in (numpy's format pads its header
    with spaces, so np.load reads it as any other .npy)."""

    HEADER_BYTES = 128  # a multiple of 64, as numpy aligns the data; room for a shape of two 20-digit numbers

    def __init__(self, file: IO[bytes], columns: int):
        self.file, self.columns, self.rows = file, columns, 0
        file.write(self.header())

    def header(self) -> bytes:
        described = repr({"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.columns)})
        text = described.ljust(self.HEADER_BYTES - 10 - 1) + "\n"  # 10: magic, version and header length
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin-1")

    def append(self, vectors: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        self.rows += len(vectors)

    def finish(self) -> None:
        self.file.seek(0)
        self.file.write(self.header())
        self.file.flush()
