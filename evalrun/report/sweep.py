"""A sweep as the report reads it: the complete runs of one or more sweep dirs, and what their
``run.json`` files declare about each column (direction, kind, what it depends on, which
config columns follow the seed). Nothing here guesses a column's meaning from its name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from evalrun.errors import EvalrunError, first_line
from evalrun.report.added_metrics import merge_added_metrics, per_image_columns

log = logging.getLogger(__name__)
# A prompt as images are paired and grouped by: its id (a position in its prompt set), its text and, for
# edits, its input image file, as one value. Ids alone would pair two prompt sets' first prompts, which are
# different prompts; id and instruction alone, two edit tables' first rows, edits of different images.
PROMPT_UNIT = "prompt_unit"


def same_partition(a: pd.Series, b: pd.Series) -> bool:
    """True when ``a`` and ``b`` group the rows identically (e.g. ``scheduler`` and ``scheduler_class``)."""
    a, b = a.map(str), b.map(str)
    return bool(a.groupby(b).nunique().max() == 1 and b.groupby(a).nunique().max() == 1)


def varying_keys(runs: pd.DataFrame, config_columns: Sequence[str], seed_columns: Sequence[str]
                 ) -> tuple[list[str], dict[str, str]]:
    """Config columns that vary across runs, leaving out the seed and the settings declared to follow
    it, as (keys, moving): a column that groups the runs exactly as an earlier key does is not a key
    of its own but moves with it (``moving``: column -> key), e.g. ``scheduler_class`` with
    ``scheduler``, or ``steps`` in a sweep that ran ddim at 2 steps and euler at 3."""
    keys: list[str] = []
    moving: dict[str, str] = {}
    for col in config_columns:
        if col in seed_columns or col not in runs or runs[col].map(str).nunique() < 2:
            continue
        partner = next((k for k in keys if same_partition(runs[col], runs[k])), None)
        if partner is None:
            keys.append(col)
        else:
            moving[col] = partner
    return keys, moving


def value_text(value: Any) -> str:
    """A config value as a label: ``2`` not ``2.0``, ``–`` for missing."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class Sweep:
    """The complete runs of one or more sweep dirs, and what the runs say about their columns."""

    runs: pd.DataFrame
    config_columns: list[str]
    metric_columns: list[str]
    columns: dict[str, dict[str, Any]]   # metric column -> its declaration in run.json
    seed_columns: list[str]
    keys: list[str]
    sweep_dirs: list[Path]
    # Varying columns that move with a key (see varying_keys), less those declared to describe it:
    # a reader must see them (the summary table shows them beside their key, report.md names them).
    moves_with: dict[str, str] = field(default_factory=dict)
    merged: dict[str, list[str]] = field(default_factory=dict)  # run dir -> runs read as one with it (added_metrics)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    smoke: list[str] = field(default_factory=list)
    _per_image: pd.DataFrame | None = field(default=None, repr=False)

    def declared(self, metric: str) -> dict[str, Any]:
        """A metric column's declaration; an undeclared column is a score of unknown direction."""
        return self.columns.get(metric, {"kind": "score", "direction": None, "depends_on": []})

    def direction(self, metric: str) -> bool | None:
        """True (higher is better) / False (lower) as declared; None for spreads, counts and unknown columns."""
        direction = self.declared(metric).get("direction")
        return None if direction is None else direction == "higher"

    @property
    def scores(self) -> list[str]:
        """Score columns (as declared) with at least one value; spreads, bounds and counts left out."""
        return [m for m in self.metric_columns if m in self.runs and self.declared(m).get("kind", "score") == "score"
                and pd.to_numeric(self.runs[m], errors="coerce").notna().any()]

    @property
    def costs(self) -> list[str]:
        """Cost columns (declared kind "cost": denoiser evaluations, seconds, memory) with at least one value."""
        return [m for m in self.metric_columns if m in self.runs and self.declared(m).get("kind") == "cost"
                and pd.to_numeric(self.runs[m], errors="coerce").notna().any()]

    @property
    def group_columns(self) -> list[str]:
        """Config columns that define a configuration: all but the seed and what follows it (as aggregate groups)."""
        return [c for c in self.config_columns if c in self.runs and c not in self.seed_columns]

    def smoke_runs(self) -> list[str]:
        """Run dirs (of the runs in the report) that used a random-weights smoke model."""
        smoke = set(self.smoke)
        return [d for d in self.runs["run_dir"] if d in smoke]

    def smoke_note(self) -> str:
        """A warning for every artefact when any run used a random-weights smoke model; empty otherwise."""
        n = len(self.smoke_runs())
        if not n:
            return ""
        which = "all runs" if n == len(self.runs) else f"{n} of {len(self.runs)} runs"
        return f"SMOKE MODEL WITH RANDOM WEIGHTS ({which}): the numbers mean nothing"

    @property
    def row_keys(self) -> list[str]:
        """The keys that tell configurations apart; a constant label column when only seeds vary."""
        if self.keys:
            return list(self.keys)
        return [next((c for c in ("model", "scheduler") if c in self.runs), self.config_columns[0])]

    @property
    def label_keys(self) -> list[str]:
        """``row_keys`` and, beside each, the columns that move with it: the summary table's row labels."""
        out = []
        for key in self.row_keys:
            out += [key, *(c for c, k in self.moves_with.items() if k == key)]
        return out

    def constants(self) -> dict[str, str]:
        """Config columns with one value across all runs (model, CLIP model, resolution...)."""
        return {c: value_text(self.runs[c].iloc[0]) for c in self.config_columns
                if c in self.runs and c not in self.seed_columns and self.runs[c].map(str).nunique() == 1}

    def settings_note(self, metrics: Iterable[str]) -> str:
        """The constant settings of ``metrics`` (``clip_score.clip_model=...``), for table captions."""
        consts = self.constants()
        parts = [f"{c}={consts[c]}" for m in metrics for c in self.declared(m).get("depends_on", []) if c in consts]
        return "; ".join(dict.fromkeys(parts))

    def per_image(self) -> pd.DataFrame:
        """Every run's ``per_image.csv`` with ``run_dir`` and the sweep keys added (read once)."""
        if self._per_image is None:
            frames = []
            for run_dir in self.runs["run_dir"]:
                frame = _read_per_image(run_dir)
                if frame is not None:
                    others = [f for d in self.merged.get(run_dir, []) if (f := _read_per_image(d)) is not None]
                    frame = per_image_columns(frame, others)
                    frames.append(frame.drop(columns=[k for k in self.keys if k in frame]).assign(run_dir=run_dir))
            if not frames:
                self._per_image = pd.DataFrame(columns=["run_dir"])
            else:
                merged = pd.concat(frames, ignore_index=True)
                if "prompt_id" in merged:
                    text = merged["prompt"].fillna("") if "prompt" in merged else ""
                    merged[PROMPT_UNIT] = merged["prompt_id"].astype(str) + "\x1f" + text
                    for column in ("input_pixels", "input_path"):  # the pixels where recorded, else the file
                        if column in merged:
                            merged[PROMPT_UNIT] += "\x1f" + merged[column].fillna("").astype(str)
                            break
                self._per_image = merged.merge(self.runs[["run_dir", *self.keys]], on="run_dir", how="left")
        return self._per_image

    def configurations(self) -> list[tuple[tuple, pd.DataFrame]]:
        """(label, runs) per configuration: runs grouped by ``group_columns`` (what aggregate averages
        over), labelled by their ``row_keys`` values."""
        cols = self.group_columns or self.row_keys
        out = []
        for _, group in self.runs.groupby([self.runs[c].map(str) for c in cols], sort=True, dropna=False):
            out.append((tuple(group[k].iloc[0] for k in self.row_keys), group.sort_values("seed")))
        return out

    def provenance_differences(self) -> dict[tuple, dict[str, dict[str, list[str]]]]:
        """Per configuration (label as in :meth:`configurations`), the provenance fields that differ
        between its runs (see :func:`evalrun.report.provenance.differing_fields`); run ids are run dirs."""
        from evalrun.report.provenance import group_differences, read_provenance

        groups = {label: {d: read_provenance(d) for d in runs["run_dir"]}
                  for label, runs in self.configurations() if len(runs) > 1}
        return group_differences(groups)

    def per_image_metrics(self) -> list[str]:
        """Score metrics that also have one value per image (paired by prompt and seed)."""
        frame = self.per_image()
        return [m for m in self.scores if m in frame and pd.to_numeric(frame[m], errors="coerce").notna().any()]


# Columns every per-image row has and the report indexes images by: a gap in one means a damaged file.
_IMAGE_IDS = ("image_id", "seed", "image_index")


def _read_per_image(run_dir: str) -> pd.DataFrame | None:
    """A run's ``per_image.csv`` as written; None when absent, or damaged (emptied, cut short, not
    UTF-8): that run's images are then left out of the per-image tables and the gallery, with a warning.

    evalrun writes a missing value (None or NaN) as an empty cell and nothing else, so only an empty
    cell is missing here: pandas' other NA spellings are text someone wrote (a prompt ``NA``, a
    category ``None``), kept as written."""
    import io

    path = Path(run_dir) / "per_image.csv"
    if not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):  # every writer ends a row with a newline: the last row is cut
            raise ValueError("the last line is cut short")
        frame = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""],
                            dtype={"prompt_id": str, "prompt": str, "category": str, "challenge": str})
        gaps = [c for c in _IMAGE_IDS if c in frame and frame[c].isna().any()]
        if gaps:
            raise ValueError(f"rows without {', '.join(gaps)}")
    except (OSError, ValueError) as exc:  # pandas' EmptyDataError and ParserError, UnicodeDecodeError: ValueErrors
        log.warning("%s is unreadable (%s): its images are left out of the per-image tables and the gallery",
                    path, first_line(exc, 120))
        return None
    return frame


def load_sweep(sweep_dirs: Sequence[Path | str]) -> Sweep:
    """Complete runs under ``sweep_dirs`` (merged); a run found twice counts once, and so do runs that
    made the same images with other metrics (see :mod:`evalrun.report.added_metrics`)."""
    from evalrun.runs import check_sweep_dir, drop_repeated_runs, load_runs

    dirs = [Path(d) for d in sweep_dirs]
    for d in dirs:
        check_sweep_dir(d)
    runs = load_runs(dirs)
    attrs = dict(runs.attrs)
    runs.attrs.clear()  # pandas deep-copies attrs on every operation; the Sweep keeps them instead
    if runs.empty:
        raise EvalrunError(f"no complete runs (run.json + metrics.csv) under {', '.join(map(str, dirs))}")
    config_columns = [c for c in attrs["config_columns"] if c in runs]
    runs, _ = drop_repeated_runs(runs, config_columns)  # one implementation with the summary's
    metric_columns = [m for m in attrs["metric_columns"] if m in runs]
    runs, merged = merge_added_metrics(runs, config_columns, metric_columns, attrs["columns"])
    if attrs.get("missing"):
        log.warning("%d job dir(s) have no complete run and are left out: %s",
                    len(attrs["missing"]), ", ".join(attrs["missing"]))
    seeds = [c for c in attrs["seed_columns"] if c in runs]
    keys, moving = varying_keys(runs, config_columns, seeds)
    derived = attrs.get("derived_columns", {})
    return Sweep(runs=runs, config_columns=config_columns, metric_columns=metric_columns, merged=merged,
                 columns=dict(attrs["columns"]), seed_columns=seeds, keys=keys,
                 moves_with={c: k for c, k in moving.items() if derived.get(c) != k}, sweep_dirs=dirs, missing=list(attrs["missing"]), failed=dict(attrs["failed"]),
                 smoke=list(attrs["smoke"]))
