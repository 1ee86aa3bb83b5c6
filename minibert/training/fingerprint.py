"""A content hash of a training set, so that resuming on other data is refused even when it has as many examples
(every label flipped, another corpus prepared to the same size): the hash, not the count, names the data."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np
import torch


def dataset_fingerprint(dataset: Any) -> str | None:
    """sha256 of the examples' content. A dataset may give its own (a `fingerprint()` method: prepared pretraining
    shards hash their arrays); a list or tuple of examples is hashed item by item; any other dataset is not hashed
    (None), and resuming then checks only its size."""
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        return own()
    if not isinstance(dataset, (list, tuple)):
        return None
    digest = hashlib.sha256()
    for item in dataset:
        _update(digest, item)
    return digest.hexdigest()


_PLAIN = (int, float, str, bool)


def _update(digest: "hashlib._Hash", value: Any) -> None:
    """Feed a value's content to the digest, with its type and length, so that different values never collide by
    concatenation."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        digest.update(f"A{value.dtype.str}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(f"D{type(value).__name__}".encode())
        for field in dataclasses.fields(value):
            digest.update(field.name.encode())
            _update(digest, getattr(value, field.name))
    elif isinstance(value, dict):
        digest.update(f"M{len(value)}".encode())
        for key in sorted(value, key=str):
            _update(digest, key)
            _update(digest, value[key])
    elif isinstance(value, (list, tuple)) and all(v is None or type(v) in _PLAIN for v in value):
        _update(digest, repr(value))  # token ids, labels: one repr, not one update per number
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for element in value:
            _update(digest, element)
    else:
        text = (value if isinstance(value, str) else repr(value)).encode("utf-8", "surrogatepass")
        digest.update(f"S{len(text)}:".encode() + text)
