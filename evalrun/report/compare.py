"""Paired comparison of two configurations: is B better than A, beyond seed and prompt noise?

A and B are selectors over config keys (``"model=sd14"``, ``"scheduler=ddim,steps=20"``). Runs are
paired on every other config key that varies within a side (so ``model=sd14`` vs ``model=sd15``
in a sweep over schedulers pairs ddim with ddim) plus the seed; per-image metrics are further
paired by the prompt (its id and its text: ids are positions in a prompt set, and two sets' first
prompts are different prompts) and ``image_index``. A metric without pairs is left out of its
comparison (and named in it); the others are still compared. The difference is B − A, tested over
independent units: per-image differences averaged per prompt (the images of one prompt are not
independent of each other), run-level ones per seed (per run pair with one seed). The A and B means are
over the same units, so B − A is their difference. Its 95% interval is a bootstrap-t interval of the
mean with ``numpy.random.default_rng(seed)`` (so the report is reproducible) when there are at least
``MIN_BOOTSTRAP_PAIRS`` (10) units, and a Student-t interval with fewer (see
:mod:`evalrun.report.significance`: the same rule decides which table cells are bold).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from evalrun.errors import EvalrunError
from evalrun.report.significance import MIN_BOOTSTRAP_PAIRS, bootstrap_t_ci, independent_units, paired_interval
from evalrun.report.sweep import PROMPT_UNIT, value_text

if TYPE_CHECKING:
    from evalrun.report.labels import Labels
    from evalrun.report.sweep import Sweep

IMAGE_KEYS = [PROMPT_UNIT, "image_index"]
__all__ = ["Comparison", "bootstrap_t_ci", "compare", "default_comparisons", "parse_selector", "select", "to_markdown",
           "write_comparisons"]


def parse_selector(selector: str | Mapping[str, Any]) -> dict[str, str]:
    """``"model=sd15,steps=20"`` or a mapping -> ``{"model": "sd15", "steps": "20"}``."""
    if isinstance(selector, Mapping):
        return {str(k): str(v) for k, v in selector.items()}
    out = {}
    for item in str(selector).split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EvalrunError(f"comparison selector {selector!r}: write KEY=VALUE[,KEY=VALUE...], e.g. model=sd15")
        if key.strip() in out:  # kept as the last value, the error quoted a selector nobody typed
            raise EvalrunError(f"comparison selector {selector!r} names {key.strip()!r} more than once; a run has one "
                               f"value of each key: compare them as two selectors ({key.strip()}=A {key.strip()}=B)")
        out[key.strip()] = value.strip()
    return out


def selector_text(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items())


def _matches(value: Any, wanted: str) -> bool:
    if value_text(value) == wanted or str(value) == wanted:
        return True
    if value_text(value) == "–":
        return wanted.lower() in ("", "null", "none", "nan")
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return False


def select(sweep: Sweep, selector: Mapping[str, str]) -> pd.DataFrame:
    """The runs whose config matches every ``key=value`` of ``selector`` (numbers compare as numbers)."""
    runs = sweep.runs
    mask = pd.Series(True, index=runs.index)
    for key, wanted in selector.items():
        if key not in sweep.config_columns:
            raise EvalrunError(f"unknown config key {key!r} in selector {selector_text(selector)!r}; "
                               f"config keys: {', '.join(sweep.config_columns)}")
        hit = runs[key].map(lambda v, w=wanted: _matches(v, w))
        if not (mask & hit).any():
            values = sorted({value_text(v) for v in runs.loc[mask, key]})
            raise EvalrunError(f"no run matches {selector_text(selector)!r}: {key} takes {', '.join(values)}")
        mask &= hit
    return runs[mask]


@dataclass
class Comparison:
    a: str
    b: str
    paired_on: list[str]
    differs: dict[str, str]    # side attributes: key -> "A value vs B value"
    results: pd.DataFrame      # one row per metric
    skipped: dict[str, str] | None = None  # metric -> why it has no pairs


def _side_split(sweep: Sweep, a_runs: pd.DataFrame, b_runs: pd.DataFrame, selected: set[str]):
    """Keys to pair on (vary within a side) and keys that tell the sides apart (constant within each)."""
    paired, differs = [], {}
    for col in sweep.config_columns:
        if col in sweep.seed_columns or col in selected:
            continue
        na, nb = a_runs[col].map(str).nunique(), b_runs[col].map(str).nunique()
        if na <= 1 and nb <= 1:
            va, vb = value_text(a_runs[col].iloc[0]), value_text(b_runs[col].iloc[0])
            if va != vb:
                differs[col] = f"{va} vs {vb}"
        else:
            paired.append(col)
    return paired, differs


def _verdict(diff: float, low: float, high: float, higher: bool | None, a: str, b: str) -> str:
    if low <= 0 <= high:
        return "no significant difference (CI includes 0)"
    if higher is None:
        return f"{b} higher" if diff > 0 else f"{b} lower"
    return f"{b} better" if (diff > 0) == higher else f"{a} better"


def compare(sweep: Sweep, a: str | Mapping[str, Any], b: str | Mapping[str, Any], metrics: Sequence[str] | None = None,
            seed: int = 0, resamples: int = 10_000) -> Comparison:
    """Paired B − A for each metric: mean difference, bootstrap 95% CI, whether it excludes zero."""
    sel_a, sel_b = parse_selector(a), parse_selector(b)
    a_runs, b_runs = select(sweep, sel_a), select(sweep, sel_b)
    both = set(a_runs["run_dir"]) & set(b_runs["run_dir"])
    if both:
        raise EvalrunError(f"{selector_text(sel_a)!r} and {selector_text(sel_b)!r} both select {len(both)} run(s); "
                           "the two sides must not overlap")
    name_a, name_b = selector_text(sel_a), selector_text(sel_b)
    paired, differs = _side_split(sweep, a_runs, b_runs, set(sel_a) | set(sel_b))
    run_keys = [*paired, "seed"]
    for side, runs in ((name_a, a_runs), (name_b, b_runs)):
        if runs.duplicated(subset=run_keys).any():
            raise EvalrunError(f"{side!r} has several runs with the same {', '.join(run_keys)}; "
                               "add a key to the selector")
    per_image = set(sweep.per_image_metrics())
    rows, skipped = [], {}
    for metric in metrics or sweep.scores:
        if metric in per_image:
            kind, keys = "per-image", [*run_keys, *IMAGE_KEYS]
            frame = sweep.per_image()[["run_dir", *IMAGE_KEYS, metric]]
            side_a = frame.merge(a_runs[["run_dir", *run_keys]], on="run_dir")
            side_b = frame.merge(b_runs[["run_dir", *run_keys]], on="run_dir")
        else:
            kind, keys = "set", run_keys
            side_a, side_b = a_runs, b_runs
        pairs = side_a[[*keys, metric]].merge(side_b[[*keys, metric]], on=keys, suffixes=("_a", "_b"))
        va = pd.to_numeric(pairs[f"{metric}_a"], errors="coerce").to_numpy()
        vb = pd.to_numeric(pairs[f"{metric}_b"], errors="coerce").to_numpy()
        ok = np.isfinite(va) & np.isfinite(vb)
        if not ok.any():
            unit = "(prompt, seed) pairs" if kind == "per-image" else "seeds"
            skipped[metric] = (f"the sides share no {unit} with a {metric} value (paired on {', '.join(keys)}); "
                               f"seeds: {_seeds(a_runs)} vs {_seeds(b_runs)}")
            continue
        diffs = pd.Series(vb[ok] - va[ok], index=pd.MultiIndex.from_frame(pairs.loc[ok, keys].astype(str)))
        units, unit = independent_units(diffs)
        # Each side's mean over the same units, each unit weighted alike, so that B - A is their difference
        # (over image pairs, prompts with more pairs weighed more in the means than in the difference).
        unit_means = [independent_units(pd.Series(v[ok], index=diffs.index))[0].mean() for v in (va, vb)]
        low, high, method = paired_interval(units, seed=seed, resamples=resamples)
        higher = sweep.direction(metric)
        testable = method != "untestable"
        verdict = (_verdict(units.mean(), low, high, higher, name_a, name_b) if testable
                   else f"not testable (one {unit[:-1]})")
        rows.append({"a": name_a, "b": name_b, "metric": metric, "kind": kind, "pairs": int(ok.sum()),
                     "units": int(units.size), "unit": unit,
                     "mean_a": unit_means[0], "mean_b": unit_means[1], "diff": units.mean(),
                     "ci95_low": low, "ci95_high": high, "excludes_zero": testable and not (low <= 0 <= high),
                     "method": method, "higher_is_better": higher, "verdict": verdict,
                     "paired_on": " ".join(keys), "bootstrap_seed": seed, "resamples": resamples})
    if not rows:
        raise EvalrunError(f"{name_a!r} vs {name_b!r}: " + "; ".join(skipped.values()))
    return Comparison(a=name_a, b=name_b, paired_on=run_keys, differs=differs, results=pd.DataFrame(rows),
                      skipped=skipped)


def _seeds(runs: pd.DataFrame) -> str:
    return "[" + ", ".join(value_text(s) for s in sorted(set(runs["seed"].tolist()))) + "]"


def default_comparisons(sweep: Sweep) -> list[tuple[dict[str, str], dict[str, str]]]:
    """For each varying key: every value against the first (sorted); a sweep over 17 samplers gets 16."""
    out = []
    for key in sweep.keys:
        levels = sorted(sweep.runs[key].dropna().unique().tolist(), key=lambda v: (isinstance(v, str), v))
        if len(levels) >= 2:
            first = value_text(levels[0])
            out += [({key: first}, {key: value_text(v)}) for v in levels[1:]]
    return out


def _fmt(value: float) -> str:
    return f"{value:.4g}" if np.isfinite(value) else "–"


def to_markdown(comparisons: Sequence[Comparison], labels: Labels | None = None) -> str:
    from evalrun.report.writers import md_escape

    lines = []
    for c in comparisons:
        lines += [f"### B = `{c.b}` vs A = `{c.a}`", "",
                  f"Paired on {', '.join(c.paired_on)} (per-image metrics also on the prompt and image index)."
                  + (f" Sides also differ in: {', '.join(f'{k} ({v})' for k, v in c.differs.items())}." if c.differs else ""),
                  "", "| metric | kind | pairs (test units) | A mean | B mean | B − A | 95% CI | test | excludes 0 | verdict |",
                  "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |"]
        for r in c.results.itertuples(index=False):
            name = md_escape(labels(r.metric) if labels is not None else r.metric)
            units = f"{r.pairs} ({r.units} {r.unit})" if r.unit in ("prompts", "seeds") else str(r.pairs)
            lines.append(f"| {name} | {r.kind} | {units} | {_fmt(r.mean_a)} | {_fmt(r.mean_b)} | {_fmt(r.diff)} "
                         f"| [{_fmt(r.ci95_low)}, {_fmt(r.ci95_high)}] | {r.method} "
                         f"| {'yes' if r.excludes_zero else 'no'} | {md_escape(r.verdict)} |")
        if c.skipped:
            lines += ["", "Not compared: " + "; ".join(
                f"{md_escape(labels(m) if labels is not None else m)} ({md_escape(why)})" for m, why in c.skipped.items())]
        lines.append("")
    done = [c for c in comparisons if not c.results.empty]
    if done:
        r = done[0].results.iloc[0]
        lines.append(f"_95% interval of the mean paired difference over independent units (per-image metrics: "
                     f"prompts, each the mean of its paired image differences; set metrics: seeds, each the mean of its run "
                     f"pairs, or the run pairs with one seed): bootstrap-t "
                     f"with {MIN_BOOTSTRAP_PAIRS} or more units ({r.resamples} resamples, numpy "
                     f"default_rng({r.bootstrap_seed})), Student-t with fewer._")
    return "\n".join(lines)


def write_comparisons(comparisons: Sequence[Comparison], directory: Path, labels: Labels | None = None,
                      banner: str = "") -> list[Path]:
    from evalrun.results import atomic_write_text, write_csv

    md, csv = Path(directory) / "comparisons.md", Path(directory) / "comparisons.csv"
    warning = f"> **{banner}.**\n\n" if banner else ""
    atomic_write_text(md, "## Paired comparisons\n\n" + warning + to_markdown(comparisons, labels) + "\n")
    write_csv(pd.concat([c.results for c in comparisons], ignore_index=True), csv)
    return [md, csv]
