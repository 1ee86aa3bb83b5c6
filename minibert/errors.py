"""minibert's errors. Each message is one line naming the file, key, shape or flag at fault; the CLI prints it and
exits with status 2.

A message that names a setting spells it with `spelled(name)`: the library's own name (`per_device_batch_size`)
by default, or, while a command of the `minibert` CLI runs, the flag the user typed (`--batch-size`). The CLI sets
the spelling once (`spelling`), so the library never needs to know which front end called it."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

_spelling: dict[str, str] = {}


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
