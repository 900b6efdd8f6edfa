"""How report cells print: a metric's number format (the user's, run.json's, a default for the
metric's usual scale, or automatic) and "mean ± std (n)" cells."""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

# Decimals that suit each metric's usual scale, when neither the user nor run.json gives a format.
DEFAULT_FORMATS = {"fid": ".2f", "kid_mean": ".4f", "clip_score": ".2f", "is_mean": ".2f", "cmmd": ".3f",
                   "clip_directional": ".4f", "fd_dinov2": ".2f", "pick_score": ".3f", "nfe": ".0f",
                   "peak_memory_gib": ".2f"}
DASH = "–"


def auto_format(values: Sequence[float]) -> str:
    """Fixed decimals showing about four significant digits of the largest value."""
    finite = np.abs(np.asarray(values, dtype=float))
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if finite.size == 0:
        return ".3f"
    return f".{int(np.clip(3 - math.floor(math.log10(finite.max())), 0, 6))}f"


def metric_format(metric: str, values: Sequence[float], formats: dict[str, str] | None = None,
                  declared: dict | None = None) -> str:
    """The user's format, else the one run.json declares, else a default for the metric, else automatic;
    without fill, alignment or width (tables align their cells; padding broke Markdown bold, ``**  1.2**``)."""
    return cell_format((formats or {}).get(metric) or (declared or {}).get(metric, {}).get("fmt")
                       or DEFAULT_FORMATS.get(metric) or auto_format(values))


# Python's format spec: [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_SPEC = re.compile(r"(?:(?P<fill>.)?(?P<align>[<>=^]))?(?P<sign>[-+ ])?(?P<z>z)?(?P<alt>#)?(?P<zero>0)?(?P<width>\d+)?"
                   r"(?P<group>[,_])?(?P<precision>\.\d+)?(?P<type>[bcdeEfFgGnosxX%])?")


def cell_format(fmt: str, sign: bool = True) -> str:
    """``fmt`` without fill, alignment, zero padding and width (and its sign flag unless ``sign``)."""
    found = _SPEC.fullmatch(fmt)
    if found is None:
        return fmt
    parts = ("sign", "z", "alt", "group", "precision", "type") if sign else ("z", "alt", "group", "precision", "type")
    return "".join(found[p] or "" for p in parts)


def spread_format(fmt: str) -> str:
    """A spread's format: the value's, without a sign flag (``--format fid=+.1f`` printed ``± +7.5``)."""
    return cell_format(fmt, sign=False)


def format_cell(mean: float, std: float, n: int, fmt: str, show_n: bool = False) -> str:
    if not np.isfinite(mean):
        return DASH
    text = f"{mean:{fmt}} ± {std:{spread_format(fmt)}}" if np.isfinite(std) else f"{mean:{fmt}} ± {DASH}"
    return f"{text} (n={int(n)})" if show_n else text
