"""The one error a training run raises for problems a user can act on."""

from minibert.errors import MinibertError


class TrainingError(MinibertError):
    """A run that cannot start (bad arguments, unwritable output folder) or cannot go on (a NaN loss)."""
