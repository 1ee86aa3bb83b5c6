"""One run per output folder. Two runs writing one folder interleave their metrics and overwrite each other's
checkpoints, so a run holds `FOLDER/.minibert.lock` while it writes there, and a second run is refused, in one line
naming the holder.

The lock is a POSIX lock on that file (the kernel drops it when its process dies, however it dies), and the file
names the holder (host, process id, command) for the message. A lock file left by a killed run is therefore
stale, not held: the next run takes it over and says so. Where the filesystem cannot lock, a holder on this host
is judged alive by its process id; one on another host is never judged.
Within one process the lock is re-entrant (pretrain() holds it, then train() takes it again)."""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from minibert.errors import MinibertError, spelled
from minibert.plumbing.atomic_files import host_name, new_folder, process_alive

try:
    import fcntl
except ImportError:  # Windows: process ids only
    fcntl = None

logger = logging.getLogger("minibert")

LOCK_FILE = ".minibert.lock"
_held: dict[Path, tuple[int, int]] = {}  # resolved folder -> (open descriptor, times taken)


class FolderInUseError(MinibertError):
    """Another run holds the folder's lock."""


def _describe(holder: dict) -> str:
    started = holder.get("started")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) \
        else ""
    command = f", running {holder['command']}" if holder.get("command") else ""
    return f"process {holder.get('pid', '?')} on {holder.get('host', '?')}{when}{command}"


def _read_holder(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        holder = json.loads(data.decode("utf-8"))
    except ValueError:  # empty (being written) or damaged
        return {}
    return holder if isinstance(holder, dict) else {}


def _lock(fd: int) -> bool | None:
    """True: locked; False: another process holds it; None: this filesystem cannot lock.

    A POSIX record lock (fcntl.lockf), not flock: it belongs to this process alone, so the DataLoader workers a
    run forks do not inherit it and cannot keep it held after their parent was killed."""
    if fcntl is None:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EAGAIN):
            return False
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise


def _holder_alive(holder: dict) -> bool:
    """Without flock: a holder on this host lives while its process does; one elsewhere is assumed alive."""
    if not holder:
        return True
    if holder.get("host") != host_name():
        return True
    return isinstance(holder.get("pid"), int) and process_alive(holder["pid"]) and holder["pid"] != os.getpid()


def _take(folder: Path) -> int:
    """Open and lock folder/LOCK_FILE; returns the descriptor, or raises FolderInUseError."""
    path = folder / LOCK_FILE
    for _ in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        locked = _lock(fd)
        holder = _read_holder(fd)
        if locked is False or (locked is None and _holder_alive(holder)):
            os.close(fd)
            raise FolderInUseError(f"{folder}: another run is writing here ({_describe(holder)}); wait for it "
                                   f"to finish, or give another {spelled('output_dir')} (lock: {path})")
        try:
            same_file = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same_file = False
        if not same_file:  # the holder released (unlinked) it between our open and our lock: try again
            os.close(fd)
            continue
        if holder:
            logger.warning("%s: took over a stale lock (%s, no longer running)", path, _describe(holder))
        mine = {"host": host_name(), "pid": os.getpid(), "started": time.time(),
                "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200]}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(mine) + "\n").encode("utf-8"))
        return fd
    raise FolderInUseError(f"{path}: could not take the lock (other runs keep taking and releasing it)")


def acquire(folder: Path) -> None:
    """Take the lock of `folder` (created if missing), or raise FolderInUseError naming the holder."""
    key = Path(folder).resolve()
    if key in _held:
        fd, count = _held[key]
        _held[key] = (fd, count + 1)
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    _held[key] = (_take(Path(folder)), 1)


def release(folder: Path) -> None:
    key = Path(folder).resolve()
    fd, count = _held[key]
    if count > 1:
        _held[key] = (fd, count - 1)
        return
    del _held[key]
    try:
        (Path(folder) / LOCK_FILE).unlink(missing_ok=True)  # before unlocking, so no one locks a file gone
    finally:
        os.close(fd)


@contextmanager
def output_lock(folder: Path) -> Iterator[Path]:
    """Hold `folder`'s lock for the block. A folder this creates is removed again if the block fails and leaves
    it empty (a failed command leaves nothing half-made)."""
    with new_folder(Path(folder)) as created:
        acquire(created)
        try:
            yield created
        finally:
            release(created)
