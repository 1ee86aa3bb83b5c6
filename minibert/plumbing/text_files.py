"""Reading the text files users give (training tables, inputs to predict or embed) in a stated encoding. A byte
the encoding cannot read is an error naming the file, the line and the byte, and how to say the file's encoding:
a Latin-1 CSV is ordinary data, not a reason for a traceback."""

from __future__ import annotations

import codecs
import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from minibert.errors import DataError, spelled


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The whole text of `path`. UTF-8 files may start with a byte-order mark (Excel writes one); it is dropped."""
    path = Path(path)
    with _open_binary(path) as stream:
        data = stream.read()
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise DataError(f"{spelled('encoding')} {encoding}: unknown text encoding") from None
    try:
        return data.decode("utf-8-sig" if codec == "utf-8" else codec)
    except UnicodeDecodeError as e:
        raise undecodable(path, data, e, encoding) from None


def undecodable(path: Path | str, data: bytes, error: UnicodeDecodeError, encoding: str,
                first_line: int = 1) -> DataError:
    """The error for a byte `encoding` cannot read in `data`, which starts at line `first_line` of `path`."""
    line = data.count(b"\n", 0, error.start) + first_line
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


def text_lines(path: str | os.PathLike | None, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(line number, line without its line break) of `path`, or of stdin when None, decoded as they stream: the
    memory used does not grow with the file. A byte the encoding cannot read is an error naming the line, as in
    read_text. Lines end at "\\n" (and "\\r\\n"); encodings in which "\\n" is not that one byte (UTF-16, UTF-32)
    are read whole instead."""
    where = "stdin" if path is None else Path(path)
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise DataError(f"{spelled('encoding')} {encoding}: unknown text encoding") from None
    if "\n".encode(codec) != b"\n":
        text = read_stdin(encoding) if path is None else read_text(path, encoding)
        yield from enumerate(text.split("\n"), start=1)
        return
    decoder = codecs.getincrementaldecoder("utf-8-sig" if codec == "utf-8" else codec)()
    with _open_binary(path) as stream:
        number = 0
        for number, raw in enumerate(stream, start=1):
            try:
                line = decoder.decode(raw)
            except UnicodeDecodeError as e:
                raise undecodable(where, raw, e, encoding, first_line=number) from None
            yield number, line.rstrip("\r\n")
        try:
            decoder.decode(b"", final=True)  # a character cut off by the end of the file
        except UnicodeDecodeError as e:
            raise undecodable(where, e.object, e, encoding, first_line=number) from None


@contextmanager
def _open_binary(path: str | os.PathLike | None) -> Iterator[BinaryIO]:
    if path is None:
        import io
        import sys
        buffer = getattr(sys.stdin, "buffer", None)  # a StringIO (tests, notebooks) has none
        yield buffer if buffer is not None else io.BytesIO(sys.stdin.read().encode("utf-8"))
        return
    try:
        stream = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    with stream:
        yield stream
