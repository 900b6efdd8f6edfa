"""Writing a :class:`~evalrun.report.tables.Table`: Markdown (padded, numbers right-aligned), CSV
(long form, full precision) and LaTeX (:mod:`evalrun.report.latex`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd

from evalrun.report.formats import DASH
from evalrun.report.tables import STATS

if TYPE_CHECKING:
    from evalrun.report.tables import Table


def md_escape(text: str) -> str:
    """Text from the runs (prompts, categories, config values) as literal Markdown: a ``|`` would end the cell,
    ``<tag>`` is raw HTML to a renderer (the text vanished), ``*``/`` ` ``/``[]`` and a word-edge ``_`` format."""
    text = str(text).replace("\\", "\\\\")
    for special in "`*[]|":
        text = text.replace(special, "\\" + special)
    return re.sub(r"(?<!\w)_|_(?!\w)", r"\\_", text.replace("<", "&lt;"))


def _numeric(values: Sequence) -> bool:
    return len(values) > 0 and bool(pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").notna().all())


def to_markdown(table: Table) -> str:
    """A pipe table, columns padded to equal width; numbers (and numeric row keys) right-aligned."""
    rows = table.row_labels()
    head = [*(table.key_header(k) for k in table.row_keys), *(table.headers[c] for c in table.columns)]
    right = [_numeric([r[i] for r in rows]) for i in range(len(table.row_keys))] + [True] * len(table.columns)
    body = []
    for row in rows:
        cells = []
        for column in table.columns:
            hit = table.cell(row, column)
            text = DASH if hit is None else md_escape(hit["cell"])
            cells.append(f"**{text}**" if hit is not None and hit["best"] else text)
        body.append([*(md_escape(table.labels.value(k, v)) for k, v in zip(table.row_keys, row)), *cells])
    head = [md_escape(h) for h in head]
    widths = [max(3, len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(widths, right)) + "|"
    lines = [f"### {table.title}", ""]
    if table.banner:
        lines += [f"> **{table.banner}.**", ""]
    lines += [line(head), rule, *(line(r) for r in body)]
    caption = "; ".join(p for p in (table.note, table.rule) if p)
    if caption:
        lines += ["", f"_{caption}._"]
    return "\n".join(lines)


def to_csv_frame(table: Table) -> pd.DataFrame:
    """Long form, full precision: the row and column keys, ``metric``, mean, std, n, top, best, test, cell."""
    return table.stats[[*table.row_keys, *table.col_keys, "metric", *STATS]]


def write_table(table: Table, directory: Path) -> list[Path]:
    from evalrun.report.latex import to_latex
    from evalrun.results import atomic_write_text, write_csv

    # Appended, not with_suffix: a name holding a dotted key (pick_score.model) has no extension to replace.
    md, tex, csv = (Path(directory) / f"{table.name}{suffix}" for suffix in (".md", ".tex", ".csv"))
    atomic_write_text(md, to_markdown(table) + "\n")
    atomic_write_text(tex, to_latex(table))
    write_csv(to_csv_frame(table), csv)
    return [md, tex, csv]
