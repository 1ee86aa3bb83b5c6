"""Checked flag types for argparse, so a bad value is refused before any work, in one line naming the flag as the
user typed it ("argument --batch-size: must be a positive integer, got '-3'")."""

from __future__ import annotations

import argparse
import codecs
import math

from minibert.errors import MAX_INTEGER, shown


def _number(text: str, kind: type, what: str, accept=lambda value: True):
    """`text` as a `kind` that `accept` takes (floats must be finite, integers at most MAX_INTEGER), or an argparse
    error saying `what` it must be."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {shown(text)}") from None
    if (kind is float and not math.isfinite(value)) or not accept(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {shown(text)}")
    if kind is int and abs(value) > MAX_INTEGER:
        raise argparse.ArgumentTypeError(f"must be {what}, at most {MAX_INTEGER} (2**63-1), got {shown(text)}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, "a positive integer", lambda value: value >= 1)


def non_negative_int(text: str) -> int:
    return _number(text, int, "an integer >= 0", lambda value: value >= 0)


def positive_float(text: str) -> float:
    return _number(text, float, "a positive number", lambda value: value > 0)


def non_negative_float(text: str) -> float:
    return _number(text, float, "a number >= 0", lambda value: value >= 0)


def finite_float(text: str) -> float:
    """Any number but nan and infinities (a threshold that may be negative)."""
    return _number(text, float, "a finite number")


def fraction(text: str) -> float:
    """A share in [0, 1)."""
    return _number(text, float, "a number in [0, 1)", lambda value: 0.0 <= value < 1.0)


def probability(text: str) -> float:
    """A probability in [0, 1]."""
    return _number(text, float, "a number in [0, 1]", lambda value: 0.0 <= value <= 1.0)


def encoding(text: str) -> str:
    """A text encoding Python knows (utf-8, latin-1, cp1252, ...)."""
    try:
        return codecs.lookup(text).name
    except LookupError:
        raise argparse.ArgumentTypeError(f"unknown text encoding {text!r} (e.g. utf-8, latin-1, cp1252)") from None
