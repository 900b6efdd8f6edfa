"""Bootstrap confidence intervals, an option of the set metrics (``metrics.fid.bootstrap=200``).

A set metric (FID, FD, sFID, PRDC, ADM precision/recall) is one number per run; the summary's
interval over seeds (``<m>_ci95_low/high`` in ``summary.csv``) says how it moves when the
images are generated again with other seeds. The bootstrap says how it moves when the same
run's images are resampled: ``bootstrap`` resamples draw N generated images with replacement
(and M reference images, when the reference is a set of images and ``bootstrap_reference`` is
true; statistics from a file stay fixed), recompute the metric, and the 2.5 and 97.5
percentiles of the resampled values are ``<column>_ci95_low/high`` in the run's results.
Draws come from ``numpy.random.default_rng(bootstrap_seed)`` (default: the run's seed), per
resample the generated indices then the reference ones, as functional/bootstrap.py draws
them; seed, count and what was resampled are recorded in ``run.json``.

Off by default (``bootstrap: 0``): with it off a metric writes exactly what it wrote before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from evalrun.errors import ConfigError
from evalrun.metrics.base import Output
from evalrun.metrics.settings import setting_bool

CONFIDENCE = 0.95
SUFFIXES = ("_ci95_low", "_ci95_high")


def ci_outputs(*columns: str, fmt: str | None = None) -> tuple[Output, ...]:
    """The two bound columns of each score column (declared always, written when the bootstrap is on)."""
    return tuple(Output(f"{c}{s}", kind="bound", of=c, fmt=fmt, label=f"{c} bootstrap 95% {s.rsplit('_', 1)[1]}")
                 for c in columns for s in SUFFIXES)


class Bootstrap:
    """A metric's bootstrap settings, checked when the metric is built."""

    def __init__(self, metric: str, resamples: int, seed: int | None, reference: bool, run_seed: int) -> None:
        if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 0 or resamples == 1:
            raise ConfigError(f"metrics.{metric}.bootstrap must be 0 (off) or a number of resamples >= 2 "
                              f"(200 or more for a 95% interval), got {resamples!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ConfigError(f"metrics.{metric}.bootstrap_seed must be null (the run's seed) or an integer >= 0")
        self.metric, self.resamples = metric, int(resamples)
        self.seed = int(seed) if seed is not None else int(run_seed)
        self.reference = setting_bool(metric, "bootstrap_reference", reference)
        self.reference_applied: bool | None = None   # set when run: False where the reference is fixed statistics

    @property
    def enabled(self) -> bool:
        return self.resamples > 0

    def settings(self) -> dict[str, Any]:
        """Result columns (only when on, so runs without it keep their columns)."""
        if not self.enabled:
            return {}
        return {"bootstrap": self.resamples, "bootstrap_seed": self.seed,
                "bootstrap_reference": self.reference if self.reference_applied is None else self.reference_applied}

    def info(self, n_generated: int, n_reference: int | None) -> dict[str, Any]:
        m = self.metric
        return {f"{m}_bootstrap": {
            "resamples": self.resamples, "seed": self.seed, "confidence": CONFIDENCE,
            "interval": "percentile (numpy linear interpolation), 2.5% and 97.5%",
            "draws": "numpy default_rng(seed).integers, per resample: generated indices, then reference indices",
            "generated_resampled": n_generated,
            "reference_resampled": n_reference if self.reference_applied else None,
            "reference": "resampled with replacement" if self.reference_applied else "fixed (statistics, or bootstrap_reference=false)"}}

    def intervals(self, values: dict[str, np.ndarray]) -> dict[str, float]:
        """{score column: resampled values} -> {column_ci95_low: ..., column_ci95_high: ...}."""
        from evalrun.metrics.functional.bootstrap import percentile_interval

        out = {}
        for column, vals in values.items():
            low, high = percentile_interval(np.asarray(vals, np.float64), CONFIDENCE)
            out[f"{column}_ci95_low"], out[f"{column}_ci95_high"] = low, high
        return out

    def resample(self, fn: Callable[[np.ndarray, np.ndarray | None], dict[str, float]], n_generated: int,
                 n_reference: int | None) -> dict[str, float]:
        """Run ``fn(generated_indices, reference_indices_or_None)`` on each resample; the intervals."""
        self.reference_applied = bool(self.reference and n_reference)
        rng = np.random.default_rng(self.seed)
        values: dict[str, list[float]] = {}
        for _ in range(self.resamples):
            gen = rng.integers(0, n_generated, n_generated)
            ref = rng.integers(0, n_reference, n_reference) if self.reference_applied else None
            for column, value in fn(gen, ref).items():
                values.setdefault(column, []).append(float(value))
        return self.intervals({c: np.asarray(v) for c, v in values.items()})
