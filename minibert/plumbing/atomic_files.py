"""Writing files so that a crash, a kill or a full disk never leaves a half-written file in place of a good one.

Every file is written under a temporary name beside its target and renamed over it only when complete
(`atomic_path`). Temporary names carry the writer's host and process id, `.NAME.tmp-HOST-PID-RANDOM`, so that a
later write to the same place can tell a temporary left by a killed writer (same host, process gone) from one being
written right now, and remove it. Files are created with the mode a plain `open()` gives (0666 less the umask),
so a model or a metrics file written here is as readable as any other file the user writes.

A write that fails raises OSError naming the target, not its temporary (so "no space left on device" names the
checkpoint or file the user asked for), after removing the temporary.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

TEMP_MARK = ".tmp-"


# -- temporary names ----------------------------------------------------------------------------------------------
def host_name() -> str:
    return socket.gethostname() or "localhost"


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (a process of another user counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_name(name: str) -> str:
    """A fresh temporary name for a file or folder called `name`: `.NAME.tmp-HOST-PID-RANDOM`."""
    return f".{name}{TEMP_MARK}{host_name()}-{os.getpid()}-{secrets.token_hex(4)}"


def is_stale_temp(name: str) -> bool:
    """Whether `name` is a temporary (see temp_name) whose writer was on this host and no longer runs. A
    temporary written from another host is never judged: its writer may still be working."""
    if not name.startswith(".") or TEMP_MARK not in name:
        return False
    parts = name.rsplit(TEMP_MARK, 1)[1].rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid = parts[0], int(parts[1])
    return host == host_name() and not process_alive(pid)


def remove_stale_temps(folder: Path, name: str | None = None) -> list[Path]:
    """Remove the stale temporaries in `folder` (only those of `name` when given); returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    prefix = f".{name}{TEMP_MARK}" if name is not None else "."
    removed = []
    for entry in folder.iterdir():
        if entry.name.startswith(prefix) and is_stale_temp(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def remove_own_temps(folder: Path) -> None:
    """Remove the temporaries this process left in `folder` (a failed run cleaning up after itself)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    mark = f"{TEMP_MARK}{host_name()}-{os.getpid()}-"
    for entry in folder.iterdir():
        if entry.name.startswith(".") and mark in entry.name:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


# -- errors -------------------------------------------------------------------------------------------------------
def error_for(error: OSError, path: Path) -> OSError:
    """The same error (same errno, so the same OSError subclass) naming `path`."""
    if error.errno is None:
        return error
    return OSError(error.errno, error.strerror or os.strerror(error.errno), str(path))


def no_space(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


# -- atomic files -------------------------------------------------------------------------------------------------
def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block finishes. Stale temporaries
    of `path` (from a killed earlier write) are removed first. An OSError names `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    tmp = path.parent / temp_name(path.name)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # mode: 0666 less the umask
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise error_for(e, path) from None
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


class _ErrorKeepingWriter:
    """A binary file for torch.save that remembers the OSError a write raised: torch reports a failed write
    (a full disk) as a RuntimeError of its own, and the OSError is what says what happened."""

    def __init__(self, file: BinaryIO):
        self.file, self.error = file, None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.file.flush()


def torch_save(obj: Any, path: Path) -> None:
    """torch.save to `path` and fsync it; a failed write raises its OSError (e.g. ENOSPC), naming `path`."""
    import torch
    with open(path, "wb") as f:
        writer = _ErrorKeepingWriter(f)
        try:
            torch.save(obj, writer)
            f.flush()
        except RuntimeError:
            if writer.error is not None:
                raise error_for(writer.error, path) from None
            raise
        os.fsync(f.fileno())


# -- folders ------------------------------------------------------------------------------------------------------
@contextmanager
def new_folder(folder: Path) -> Iterator[Path]:
    """Create `folder` (and missing parents) for the block; if the block fails, remove the folders it created that
    are still empty, so a failed command leaves no empty folder behind."""
    folder = Path(folder)
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        remove_empty(missing)
        raise


def replace_folder(folder: Path, write: Callable[[Path], None]) -> None:
    """Write a folder that a run owns whole (a run's final/ or best/): `write` fills a temporary folder beside it,
    which then takes its place (an OSError it raises names the folder's file). An interrupted write leaves the
    earlier folder as it was (and its temporary, removed as a stale one later), never a mix of the earlier files and
    the new; a full disk removes the temporary at once. Between the two renames (moments) the folder is missing,
    never mixed."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder.parent, folder.name)
    new, old = folder.parent / temp_name(folder.name), folder.parent / temp_name(folder.name)
    try:
        os.mkdir(new, 0o777)
        try:
            write(new)
        except OSError as e:  # named as the folder's file, not its temporary's
            inside = Path(e.filename).relative_to(new) if e.filename and new in Path(e.filename).parents else None
            raise error_for(e, folder / inside if inside else folder) from None
        if folder.exists():
            os.rename(folder, old)
        os.rename(new, folder)
    except BaseException:
        if old.exists() and not folder.exists():  # stopped between the renames: the earlier folder goes back
            os.rename(old, folder)
        raise
    finally:
        for leftover in (new, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)


def remove_empty(folders: list[Path]) -> None:
    """Remove each folder that is empty, deepest first (the list runs from deepest to shallowest)."""
    for candidate in folders:
        try:
            candidate.rmdir()
        except OSError:  # not empty (or gone): keep it and its parents
            return


def unwritable_reason(folder: Path) -> str | None:
    """Why `folder` could not be created or written, or None; checked without creating it, so that a command
    that fails later leaves no empty folder behind."""
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        return f"{existing} is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing}: permission denied"
    return None


def check_output_folder(folder: str | os.PathLike, flag: str, inputs: Iterable[str | os.PathLike | None] = (),
                        writes: Iterable[str] = (), overwrite: tuple[str, bool] | None = None) -> Path:
    """Refuse now, before any work and without creating it, an output folder that could not be written, that is
    or would overwrite one of the command's `inputs` (`writes`: the entries the command writes in it), or that is
    an existing model or tokenizer folder, unless the command's `overwrite` flag (its spelling, and whether it was
    given) says so; `flag` names the folder in the message (e.g. "--output")."""
    from minibert.errors import InputError
    from minibert.plumbing.output_paths import check_folder_spares_inputs, check_not_a_model_folder
    folder = Path(folder)
    reason = unwritable_reason(folder)
    if reason is not None:
        raise InputError(f"{flag} {folder} is not writable ({reason})")
    check_folder_spares_inputs(folder, flag, inputs, writes, *(overwrite or (None, False)))
    check_not_a_model_folder(folder, flag, *(overwrite or (None, False)))
    return folder


def check_output_file(path: str | os.PathLike, flag: str, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuse now, before any work, an output file that could not be written (a folder, or in a folder that could
    not be made or written: atomic_path makes missing folders), or that would destroy one of the command's
    `inputs` or a model's file (see output_paths)."""
    from minibert.errors import InputError
    from minibert.plumbing.output_paths import check_file_spares_inputs
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a folder; give a file name")
    reason = unwritable_reason(path.parent)
    if reason is not None:
        raise InputError(f"{flag} {path}: cannot be written ({reason})")
    check_file_spares_inputs(path, flag, inputs)
    return path
