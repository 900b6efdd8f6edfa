"""A metric's settings checked when it is built, each refusal one line naming ``metrics.<metric>.<key>``
(a metric made in Python names its keyword argument instead: ``evalrun.errors.in_api_words``). Nothing is
truncated or coerced into a value the recorded config does not show."""

from __future__ import annotations

import math
import numbers
from typing import Any

from evalrun.errors import ConfigError, true_or_false

MAX_SEED = 2**32 - 1  # numpy's RandomState (subset draws, split permutations) takes seeds in [0, 2**32)


def setting_int(metric: str, key: str, value: Any, low: int) -> int:
    """A whole-number setting >= ``low``, or a one-line error: never a float or bool truncated by ``int()``
    into a value the recorded config does not show (``degree=2.5`` ran a quadratic kernel)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:  # numpy's ints too
        raise ConfigError(f"metrics.{metric}.{key} must be an integer >= {low}, got {value!r}")
    return int(value)


def setting_number(metric: str, key: str, value: Any, positive: bool = False, null: str | None = None) -> float | None:
    """A finite number (> 0 where ``positive``; null allowed where ``null`` says what it means), or a one-line
    error: NaN and inf passed ``<= 0`` checks and ran (``metrics.cmmd.sigma=inf`` scored 0.0, a perfect score)."""
    if value is None and null is not None:
        return None
    try:  # numpy's numbers too; an int beyond float's range is refused as not finite
        number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or (positive and not number > 0):
        allowed = f"null ({null}) or " if null is not None else ""
        raise ConfigError(f"metrics.{metric}.{key} must be {allowed}a finite number{' > 0' if positive else ''}, "
                          f"got {value!r}")
    return number


def setting_bool(metric: str, key: str, value: Any) -> bool:
    """A true/false setting (never null), or a one-line error (``evalrun.errors.true_or_false``)."""
    return true_or_false(f"metrics.{metric}.{key}", value, null_ok=False)


def setting_seed(metric: str, key: str, value: Any, run_seed: int) -> int:
    """A metric's seed: null takes the run's; otherwise an integer numpy's RandomState takes, checked when the
    config is (it failed after the images were made)."""
    if value is None:
        return int(run_seed)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"metrics.{metric}.{key} must be null (the run's seed) or an integer from 0 to 2**32 - 1, "
                          f"got {value!r}")
    return value
