"""Argument checks of the data modules: a bad setting is refused at construction, in one line naming its field.

Each check raises ``DataError`` (a ``ValueError``) worded as ``data.block_size must be ≥ 1 (got 0)``,
before any file is read, so a wrong number never reaches the loaders (where a ``block_size`` of 0
trains on empty samples and a negative one ends in "``__len__() should return >= 0``").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lightningllm.data.sources import DataError


def check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    """Refuse ``value`` unless it is an integer in ``[minimum, maximum]``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise DataError(f"{name} must be an integer (got {value!r})")
    if value < minimum:
        raise DataError(f"{name} must be ≥ {minimum} (got {value})")
    if maximum is not None and value > maximum:
        raise DataError(f"{name} must be ≤ {maximum} (got {value})")


def check_fraction(name: str, value: object, zero_allowed: bool) -> None:
    """Refuse ``value`` unless it is a number in ``[0, 1)`` (``(0, 1)`` when not ``zero_allowed``)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise DataError(f"{name} must be a number (got {value!r})")
    if not (0.0 <= value < 1.0 if zero_allowed else 0.0 < value < 1.0):  # NaN fails both
        raise DataError(f"{name} must be {'≥' if zero_allowed else '>'} 0 and < 1 (got {value})")


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    """Refuse ``value`` unless it is one of ``choices``."""
    if value not in choices:
        raise DataError(f"{name} must be one of {', '.join(map(repr, choices))} (got {value!r})")


def check_size(name: str, value: object) -> None:
    """Refuse ``value`` unless it is a size in bytes: an integer, or a number with a unit, e.g. ``50GB``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return
    if not isinstance(value, str) or not re.fullmatch(r"\s*\d+(\.\d+)?\s*([kmgt]?b?)\s*", value, re.IGNORECASE):
        raise DataError(f"{name} must be a size such as 50GB, 500MB or a number of bytes (got {value!r})")
