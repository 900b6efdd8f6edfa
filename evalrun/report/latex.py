r"""A :class:`~evalrun.report.tables.Table` as a complete LaTeX ``table`` float.

Each ``.tex`` file is a ``table`` environment with ``\caption`` (the title, what the cells are,
the settings, the bold rule) and ``\label{tab:<name>}``, ready for ``\input``. The preamble
needs ``\usepackage{booktabs}`` and ``\usepackage{siunitx}`` (version 3; TeX Live 2021 or
later). Numbers sit in siunitx ``S`` columns aligned on the decimal marker, ``mean \pm std``
typeset as separate uncertainties; bold cells use ``\bfseries`` with siunitx's
``detect-weight`` (set inside the float, so a document's own ``\sisetup`` is not changed).
When n differs between cells, each value column is followed by an ``n`` column.
Text from the runs (keys, values, categories, captions) is escaped.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

import numpy as np

from evalrun.report.formats import spread_format

if TYPE_CHECKING:
    from evalrun.report.tables import Table

PREAMBLE = r"\usepackage{booktabs}" "\n" r"\usepackage{siunitx}"
SISETUP = r"\sisetup{uncertainty-mode=separate, detect-weight=true, mode=match}"
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}
_UNICODE = {"±": r"$\pm$", "–": "--", "—": "---", "−": "$-$", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
            "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "·": r"$\cdot$", "…": r"\ldots{}",
            "‘": "`", "’": "'", "“": "``", "”": "''", "µ": r"$\mu$", "°": r"\ensuremath{^\circ}"}
_PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_GREEK_CAPITALS = {"Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega"}
_GREEK_AS_LATIN = {"Alpha": "A", "Beta": "B", "Epsilon": "E", "Zeta": "Z", "Eta": "H", "Iota": "I", "Kappa": "K",
                   "Mu": "M", "Nu": "N", "Omicron": "O", "Rho": "P", "Tau": "T", "Chi": "X"}


def _greek(ch: str) -> str | None:
    """A Greek letter as a math command (``ε`` -> ``$\\epsilon$``); None for anything else."""
    name = unicodedata.name(ch, "")
    match = re.fullmatch(r"GREEK (SMALL|CAPITAL) LETTER ([A-Z]+)", name)
    if not match:
        return None
    letter = match.group(2).lower()
    if match.group(1) == "CAPITAL":
        name = letter.capitalize()
        return f"$\\{name}$" if name in _GREEK_CAPITALS else _GREEK_AS_LATIN.get(name)
    return "o" if letter == "omicron" else f"$\\{letter}$"


def latex_escape(text: str) -> str:
    """Text for LaTeX: specials escaped, common symbols and Greek letters as commands; other
    characters beyond Latin-1, which pdflatex cannot typeset without extra packages, become ``?``."""
    out = []
    for ch in str(text):
        if ch in _SPECIAL:
            out.append(_SPECIAL[ch])
        elif ch in _UNICODE:
            out.append(_UNICODE[ch])
        elif ord(ch) > 0xFF or (ord(ch) < 0x20 and ch not in "\t\n"):
            out.append(_greek(ch) or "?")
        else:
            out.append(ch)
    return "".join(out)


def breakable(escaped: str) -> str:
    r"""Escaped text with line-break points after ``_``, ``/``, ``=`` and ``.`` inside long keys and
    paths (``clip_score.clip_model=openai/clip-vit-base-patch16``), so captions do not overflow."""
    return re.sub(r"(\\_|/|=|\.(?=\S))", r"\1\\allowbreak{}", escaped)


def label_name(name: str) -> str:
    """``clip_score_by_scheduler_x_steps`` -> ``tab:clip-score-by-scheduler-x-steps``."""
    return "tab:" + re.sub(r"[^A-Za-z0-9.:-]+", "-", name).strip("-")


def _numeric_key(values: list) -> bool:
    return bool(values) and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                                for v in values)


def _number(value: float, fmt: str) -> str:
    return f"{value:{fmt}}"


def _column_spec(table: Table, column: str) -> tuple[str, bool]:
    """The tabular spec of a value column and whether it is an ``S`` column (plain decimals)."""
    cells = table.stats[table.stats["column"] == column]
    fmt = table.fmts.get(column, ".4g")
    means = [_number(m, fmt) for m in cells["mean"] if np.isfinite(m)]
    stds = [_number(s, spread_format(fmt)) for s, m in zip(cells["std"], cells["mean"]) if np.isfinite(s) and np.isfinite(m)]
    if not all(_PLAIN_NUMBER.fullmatch(t) for t in means + stds):
        return "c", False
    if not means:
        return "S[table-format=1.0]", True
    integer = max(len(t.lstrip("-").split(".")[0]) for t in means)
    decimals = max(len(t.split(".")[1]) if "." in t else 0 for t in means)
    sign = "-" if any(t.startswith("-") for t in means) else ""
    uncertainty = max((len(t.replace(".", "").lstrip("0")) or 1 for t in stds), default=0)
    return f"S[table-format={sign}{integer}.{decimals}{f'({uncertainty})' if uncertainty else ''}]", True


def _value(hit, fmt: str, numeric: bool) -> str:
    if hit is None or not np.isfinite(hit["mean"]):
        return "{--}" if numeric else "--"
    mean, std = _number(hit["mean"], fmt), hit["std"]
    if numeric:
        text = f"{mean} \\pm {_number(std, spread_format(fmt))}" if np.isfinite(std) else mean
        return rf"\bfseries {text}" if hit["best"] else text
    text = latex_escape(f"{mean} ± {_number(std, spread_format(fmt))}" if np.isfinite(std) else mean)
    return rf"\textbf{{{text}}}" if hit["best"] else text


def to_latex(table: Table) -> str:
    """The table as a ``table`` float: caption, label, booktabs rules, siunitx-aligned numbers."""
    show_n = not table.uniform_n()
    nrow = len(table.row_keys)
    specs, numeric = [], {}
    for column in table.columns:
        spec, numeric[column] = _column_spec(table, column)
        specs.append(spec)
        if show_n:
            n_digits = max(len(str(int(n))) for n in table.stats["n"])
            specs.append(f"S[table-format={n_digits}.0]")
    width = 2 if show_n else 1
    rows = table.row_labels()
    aligns = ["r" if _numeric_key([r[i] for r in rows]) else "l" for i in range(nrow)]
    title = latex_escape(table.title)
    parts = [rf"\textbf{{{latex_escape(table.banner)}}}" if table.banner else "",
             breakable(latex_escape("; ".join(p for p in (table.note, table.rule) if p)))]
    caption = ". ".join(p for p in parts if p)
    lines = [f"% evalrun table {table.name}: needs {PREAMBLE.replace(chr(10), ' ')} in the preamble.",
             r"\begin{table}[htbp]", r"\centering", SISETUP,
             rf"\caption[{{{title}}}]{{{title}. {caption}.}}" if caption else rf"\caption{{{title}.}}",
             rf"\label{{{label_name(table.name)}}}",
             rf"\begin{{tabular}}{{{''.join(aligns)}{' '.join([''] + specs)}}}", r"\toprule"]
    if table.col_keys:
        span = width * len(table.columns)
        lines.append("{} & " * nrow + rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(table.spanner())}}} \\")
        lines.append(rf"\cmidrule(lr){{{nrow + 1}-{nrow + span}}}")
        heads = [table.col_text.get(c, c) for c in table.columns]
    else:
        heads = [table.headers[c] for c in table.columns]
    head = [latex_escape(table.key_header(k)) for k in table.row_keys]
    for text in heads:
        head.append(f"{{{latex_escape(text)}}}")
        if show_n:
            head.append("{$n$}")
    lines += [" & ".join(head) + r" \\", r"\midrule"]
    for row in rows:
        cells = [latex_escape(table.labels.value(k, v)) for k, v in zip(table.row_keys, row)]
        for column in table.columns:
            hit = table.cell(row, column)
            cells.append(_value(hit, table.fmts.get(column, ".4g"), numeric[column]))
            if show_n:
                cells.append("{--}" if hit is None else str(int(hit["n"])))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
