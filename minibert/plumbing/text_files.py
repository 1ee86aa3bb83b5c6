"""Reading the text files users give (training tables, inputs to predict or embed) in a stated encoding. A byte
the encoding cannot read is an error naming the file, the line and the byte, and how to say the file's encoding:
a Latin-1 CSV is ordinary data, not a reason for a traceback."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from minibert.errors import DataError, spelled


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The whole text of `path`. UTF-8 files may start with a byte-order mark (Excel writes one); it is dropped."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise DataError(f"{spelled('encoding')} {encoding}: unknown text encoding") from None
    try:
        return data.decode("utf-8-sig" if codec == "utf-8" else codec)
    except UnicodeDecodeError as e:
        raise undecodable(path, data, e, encoding) from None


def undecodable(path: Path | str, data: bytes, error: UnicodeDecodeError, encoding: str) -> DataError:
    line = data.count(b"\n", 0, error.start) + 1
    column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
    return DataError(f"{path}:{line}: byte 0x{data[error.start]:02x} (column {column}) is not valid {encoding}; "
                     f"give the file's encoding with {spelled('encoding')} (e.g. latin-1, cp1252)")


def read_stdin(encoding: str = "utf-8") -> str:
    """All of standard input, decoded like read_text (as bytes where stdin has them, so --encoding applies)."""
    import sys
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # already text (a StringIO in tests and notebooks)
        return sys.stdin.read()
    data = buffer.read()
    try:
        return data.decode("utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding)
    except UnicodeDecodeError as e:
        raise undecodable("stdin", data, e, encoding) from None
