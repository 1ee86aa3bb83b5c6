"""minibert's errors. Each message is one line naming the file, key, shape or flag at fault; the CLI prints
it and exits with status 2."""


class MinibertError(ValueError):
    """Base class: bad input a user can fix."""


class ConfigError(MinibertError):
    """A config value BERT cannot be built from."""


class CheckpointError(MinibertError):
    """A checkpoint that cannot be found, read or matched to the model."""


class DataError(MinibertError):
    """A data file or dataset that cannot be read or used."""


class InputError(MinibertError):
    """Tensors passed to a model that it cannot take (too long, ids out of range, mismatched shapes)."""
