"""minibert's errors. Each message is one line naming the file, key, shape or flag at fault; the CLI prints it and
exits with status 2.

A message that names a setting spells it with `spelled(name)`: the library's own name (`per_device_batch_size`)
by default, or, while a command of the `minibert` CLI runs, the flag the user typed (`--batch-size`). The CLI sets
the spelling once (`spelling`), so the library never needs to know which front end called it."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

_spelling: dict[str, str] = {}

# The largest integer a setting takes: what torch, NumPy and the operating system hold in a signed 64-bit integer
# (a seed, a count of steps, a size). Python reads any integer; a larger one would fail deep inside a library
# ("Overflow when unpacking long long") instead of where it was given.
MAX_INTEGER = 2**63 - 1


class MinibertError(ValueError):
    """Base class: bad input a user can fix."""


class ConfigError(MinibertError):
    """A config value BERT cannot be built from."""


class CheckpointError(MinibertError):
    """A checkpoint that cannot be found, read or matched to the model."""


class ShapeMismatchError(CheckpointError):
    """A checkpoint tensor whose shape differs from the model's parameter of the same name."""

    def __init__(self, message: str, parameter: str):
        super().__init__(message)
        self.parameter = parameter  # the model's (minibert) name, e.g. "classifier.weight"


class DataError(MinibertError):
    """A data file or dataset that cannot be read or used."""


class InputError(MinibertError):
    """Tensors passed to a model that it cannot take (too long, ids out of range, mismatched shapes)."""


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM: `kill`, a job scheduler, a container stopping). Raised by the CLI's
    handler, and a KeyboardInterrupt, so that it unwinds as Ctrl-C does: temporary files removed, the output folder's
    lock released, earlier outputs left as they were."""


def shown(value: object, most: int = 60) -> str:
    """`value` for a message: repr() of it, cut in the middle when long (see `elided`)."""
    if isinstance(value, str):
        return elided(value, most, quote=True)
    return elided(repr(value), most)


def elided(text: str, most: int = 60, quote: bool = False) -> str:
    """`text` cut in the middle when longer than `most` characters, saying how long it was, so that an error about
    a 100,000-character text or a list of 1,350 labels stays one short line; `quote` quotes it as repr() does."""
    if len(text) <= most:
        return repr(text) if quote else text
    cut = f"{text[:most * 2 // 3]}...{text[-(most // 3):]}"
    return f"{repr(cut) if quote else cut} ({len(text):,} characters)"


class TrainingError(MinibertError):
    """A run that cannot start (bad arguments, unwritable output folder) or cannot go on (a NaN loss)."""


class DivergedError(TrainingError):
    """A run stopped at a non-finite loss or gradient (too high a learning rate, most often)."""


def spelled(name: str) -> str:
    """How the user spelled the setting `name`: its command-line flag inside the CLI, else the name itself."""
    return _spelling.get(name, name)


@contextmanager
def spelling(names: Mapping[str, str]) -> Iterator[None]:
    """Within the block, `spelled(name)` gives `names[name]` (e.g. {"learning_rate": "--lr"})."""
    saved = dict(_spelling)
    _spelling.update(names)
    try:
        yield
    finally:
        _spelling.clear()
        _spelling.update(saved)
