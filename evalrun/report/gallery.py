"""One self-contained HTML page: warnings, the summary table, then for each prompt every run's images side by side.

Opens from the file system with no server: the data is written into the page (a ``fetch()`` of
JSON fails under ``file://``), images are linked by relative paths, and every piece of text from
the runs (prompts, captions, config values, paths, errors) is HTML-escaped. Configurations are the
columns; seeds (and image indices) the rows; each image carries its per-image scores. For edits,
each prompt shows the instruction, the input and output captions, and the input image (copied
into ``inputs/`` beside the page, so the gallery does not depend on where the inputs were) in
the first column, left of the edited images.
"""

from __future__ import annotations

import collections
import hashlib
import html
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from evalrun.report.labels import Labels
from evalrun.report.sweep import PROMPT_UNIT, value_text
from evalrun.report.formats import DASH, metric_format
from evalrun.report.tables import Table

if TYPE_CHECKING:
    from evalrun.report.sweep import Sweep

INPUT_DIR = "inputs"
INPUT_MAX_SIDE = 512
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;--img:160px}
h1{font-size:1.4em}h2{font-size:1.15em;margin:1.6em 0 .2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
th{background:#f4f4f4;font-weight:600}td.num{text-align:right;white-space:nowrap}.best{font-weight:700}
.prompt{border-top:2px solid #888;margin-top:1.2em;padding-top:.3em}.prompt p{margin:.2em 0 .4em;font-size:1.05em}
.meta{color:#666;font-size:.85em}.tag{background:#eef;border-radius:3px;padding:0 4px;margin-right:4px}
.cell img{width:var(--img);height:auto;display:block;image-rendering:auto;background:#eee}
.score{font-size:.8em;color:#333}.score.top{text-decoration:underline}.missing{color:#a00;font-size:.85em}
.warn{border:2px solid #b00;background:#fff0f0;color:#700;padding:.5em .8em;margin:.6em 0;border-radius:4px}
.warn b{color:#b00}.warn ul{margin:.3em 0}.caption{margin:.1em 0}.caption b{color:#444}
td.input{background:#f8f8ff}
.controls{position:sticky;top:0;background:#fff;padding:.4em 0;border-bottom:1px solid #ddd;z-index:1}
"""

SCRIPT = """
const q=document.getElementById('filter'),size=document.getElementById('size');
q.addEventListener('input',()=>{const t=q.value.toLowerCase();let shown=0;
 for(const s of document.querySelectorAll('section.prompt')){const hit=s.dataset.text.includes(t);
  s.hidden=!hit;shown+=hit;}document.getElementById('count').textContent=shown;});
size.addEventListener('input',()=>document.body.style.setProperty('--img',size.value+'px'));
"""


def esc(value: Any) -> str:
    return html.escape(value_text(value), quote=True)


def rel_url(target: Path, start: Path) -> str:
    """A relative, percent-encoded URL from the page's folder to ``target``."""
    return quote(Path(os.path.relpath(Path(target).resolve(), Path(start).resolve())).as_posix())


def _group_header(keys: list[str], label: tuple, labels: Labels) -> str:
    return "<br>".join(f"{esc(labels(k))}: <b>{esc(labels.value(k, v))}</b>" for k, v in zip(keys, label))


def warnings_html(sweep: Sweep, provenance: dict | None = None, labels: Labels | None = None) -> str:
    """Red boxes: random-weights smoke model, provenance that differs within a configuration, failed
    and unfinished jobs. Empty when there is nothing to warn about."""
    from evalrun.report.provenance import describe

    labels = labels or Labels()
    out = []
    if sweep.smoke_note():
        out.append(f'<div class="warn" id="smoke"><b>{esc(sweep.smoke_note())}.</b> These runs used a smoke '
                   "model with random weights (for testing the pipeline only).</div>")
    if provenance:
        items = "".join(f"<li>{_group_header(sweep.row_keys, label, labels)}<ul>"
                        + "".join(f"<li><code>{esc(line)}</code></li>" for line in describe(diff)) + "</ul></li>"
                        for label, diff in provenance.items())
        out.append(f'<div class="warn" id="provenance"><b>Runs averaged together differ in provenance</b> '
                   f"(library versions, device, scheduler config or weights): their means mix these.<ul>{items}</ul></div>")
    if sweep.failed:
        items = "".join(f"<li><code>{esc(d)}</code>: {esc(e)}</li>" for d, e in sweep.failed.items())
        out.append(f'<div class="warn" id="failed"><b>{len(sweep.failed)} failed job(s)</b>, left out:<ul>{items}</ul></div>')
    if sweep.missing:
        out.append(f'<div class="warn" id="missing"><b>Not complete, left out:</b> {esc(", ".join(sweep.missing))}</div>')
    return "\n".join(out)


def _num_class(value: Any) -> str:
    return ' class="num"' if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) else ""


def summary_html(sweep: Sweep, table: Table, page_dir: Path) -> str:
    """The summary table with, per configuration, links to its run dirs (one per seed)."""
    # The table's own row keys: the sweep's keys and the columns that move with them (prompts_sha256 beside
    # prompts_filter), as its cells are indexed; the sweep's keys alone found no cell.
    keys, labels = table.row_keys, table.labels
    head = "".join(f"<th>{esc(table.key_header(k))}</th>" for k in keys) + "".join(
        f"<th>{esc(table.headers[c])}</th>" for c in table.columns) + "<th>runs</th>"
    body = []
    for _, runs in sweep.configurations():
        label = tuple(runs[k].iloc[0] for k in keys)
        cells = []
        for column in table.columns:
            hit = table.cell(label, column)
            text = DASH if hit is None else esc(hit["cell"])
            cls = "num best" if hit is not None and hit["best"] else "num"
            cells.append(f'<td class="{cls}">{text}</td>')
        links = " ".join(f'<a href="{esc(rel_url(Path(r.run_dir), page_dir))}/">seed {esc(r.seed)}</a>'
                         for r in runs.itertuples(index=False))
        body.append("<tr>" + "".join(f'<td{_num_class(v)}>{esc(labels.value(k, v))}</td>' for k, v in zip(keys, label))
                    + "".join(cells) + f"<td>{links}</td></tr>")
    caption = "; ".join(p for p in (table.note, table.rule) if p)
    note = f'<p class="meta">{esc(caption)}.</p>' if caption else ""
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{note}"


def _score_html(row: pd.Series | None, metrics: list[str], top: dict[str, float], fmts: dict[str, str],
                labels: Labels) -> str:
    parts = []
    for m in metrics:
        v = pd.to_numeric(row.get(m), errors="coerce") if row is not None else np.nan
        if not np.isfinite(v):
            continue
        cls = "score top" if m in top and v == top[m] else "score"
        parts.append(f'<div class="{cls}">{esc(labels.name(m))} {v:{fmts[m]}}</div>')
    return "".join(parts)


def copy_input(source: Any, run_dir: Path, dest: Path) -> Path | None:
    """An edit's input image as a PNG (at most ``INPUT_MAX_SIDE`` px) under ``dest``, named by the
    source file's hash; None when ``source`` is not a readable file (e.g. a hub dataset row)."""
    from PIL import Image, UnidentifiedImageError

    from evalrun.images import to_rgb

    if value_text(source) == DASH:
        return None
    path = Path(str(source)).expanduser()
    path = path if path.is_absolute() else Path(run_dir) / path
    if not path.is_file():
        return None
    data = path.read_bytes()
    target = dest / f"{hashlib.sha256(data).hexdigest()[:16]}.png"
    if not target.exists():
        try:
            with Image.open(io.BytesIO(data)) as opened:
                image = to_rgb(opened)
        except (OSError, UnidentifiedImageError):
            return None
        image.thumbnail((INPUT_MAX_SIDE, INPUT_MAX_SIDE), Image.LANCZOS)
        dest.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        image.save(tmp, format="PNG")
        os.replace(tmp, target)
    return target


def _input_cell(first: pd.Series, page_dir: Path, rows: int, copied_files: list[Path]) -> str:
    copied = copy_input(first.get("input_path"), Path(first["run_dir"]), page_dir / INPUT_DIR)
    if copied is not None and copied not in copied_files:
        copied_files.append(copied)
    size = ""
    if value_text(first.get("input_width")) != DASH:
        size = f"{value_text(first.get('input_width'))}×{value_text(first.get('input_height'))}"
        size += f" {value_text(first.get('input_mode'))}" if value_text(first.get("input_mode")) != DASH else ""
    if copied is None:
        body = f'<span class="missing">input not shown: {esc(first.get("input_path"))} is not a readable file</span>'
    else:
        body = (f'<img src="{esc(rel_url(copied, page_dir))}" alt="input: {esc(first.get("input_caption"))}" '
                f'title="{esc(first.get("input_path"))}" loading="lazy">')
    return f'<td class="cell input" rowspan="{rows}">{body}<div class="meta">input {esc(size)}</div></td>'


def _captions_html(first: pd.Series, edit: bool) -> str:
    if not edit:
        return f"<p>{esc(first.get('prompt'))}</p>"
    return "".join(f'<p class="caption"><b>{name}:</b> {esc(first.get(key))}</p>' for name, key in
                   (("Instruction", "prompt"), ("Input caption", "input_caption"), ("Output caption", "output_caption")))


def prompts_html(sweep: Sweep, page_dir: Path, formats: dict[str, str] | None = None,
                 labels: Labels | None = None, copied: list[Path] | None = None) -> tuple[str, int]:
    """One section per prompt: a table with configurations as columns and (seed, image) as rows;
    for edits, the input image first (copied under ``inputs/``; the copies are added to ``copied``)."""
    copied = [] if copied is None else copied
    labels = labels or Labels(declared=dict(sweep.columns))
    frame = sweep.per_image()
    if frame.empty or "prompt_id" not in frame:
        return '<p class="missing">No per_image.csv found in the runs.</p>', 0
    groups = sweep.configurations()
    keys = sweep.row_keys
    metrics = sweep.per_image_metrics()
    edit = "input_path" in frame and frame["input_path"].notna().any()
    fmts = {m: metric_format(m, pd.to_numeric(frame[m], errors="coerce"), formats, sweep.columns) for m in metrics}
    # Grouped by prompt (id and text): two prompt sets' prompt 0 are two sections, never one.
    index = {(r["run_dir"], r[PROMPT_UNIT], int(r["image_index"])): r for _, r in frame.iterrows()}
    order = frame.groupby(PROMPT_UNIT, sort=False)["prompt_index"].min().sort_values(kind="stable")
    image_size = {c: int(sweep.runs[c].iloc[0]) for c in ("width", "height")
                  if c in sweep.runs and pd.to_numeric(sweep.runs[c], errors="coerce").nunique() == 1}
    dims = "".join(f' {k}="{v}"' for k, v in image_size.items())
    by_prompt = dict(tuple(frame.groupby(PROMPT_UNIT, sort=False)))
    seed_runs = [{int(r.seed): r.run_dir for r in runs.itertuples(index=False)} for _, runs in groups]
    header = ("<tr><th>seed</th>" + ("<th>input</th>" if edit else "")
              + "".join(f"<th>{_group_header(keys, label, labels)}</th>" for label, _ in groups) + "</tr>")
    sections, anchors = [], collections.Counter()
    for unit in order.index:
        rows_p = by_prompt[unit]
        first = rows_p.iloc[0]
        prompt_id = first["prompt_id"]
        anchors[str(prompt_id)] += 1
        anchor = str(prompt_id) if anchors[str(prompt_id)] == 1 else f"{prompt_id}-{anchors[str(prompt_id)]}"
        lines = sorted({(int(s), int(i)) for s, i in zip(rows_p["seed"], rows_p["image_index"])})
        body = []
        for number, (seed, image_index) in enumerate(lines):
            found = [index.get((seeds[seed], unit, image_index)) if seed in seeds else None
                     for seeds in seed_runs]
            top = {}
            for m in metrics:
                direction = sweep.direction(m)
                vals = [pd.to_numeric(r.get(m), errors="coerce") for r in found if r is not None]
                vals = [v for v in vals if np.isfinite(v)]
                if direction is not None and len(vals) >= 2:
                    top[m] = max(vals) if direction else min(vals)
            cells = [_input_cell(first, page_dir, len(lines), copied)] if edit and number == 0 else []
            for row in found:
                if row is None:
                    cells.append('<td class="cell"><span class="missing">no image</span></td>')
                    continue
                src = rel_url(Path(row["run_dir"]) / str(row["path"]), page_dir)
                title = f"{row['run_dir']}/{row['path']} (generator seed {value_text(row.get('generator_seed'))})"
                alt = row.get("output_caption") if edit else row["prompt"]
                cells.append(f'<td class="cell"><img src="{esc(src)}" alt="{esc(alt)}" title="{esc(title)}"'
                             f' loading="lazy"{dims}>{_score_html(row, metrics, top, fmts, labels)}</td>')
            label = f"seed {seed}" + (f" · #{image_index}" if len(lines) > len({s for s, _ in lines}) else "")
            body.append(f"<tr><th>{esc(label)}</th>{''.join(cells)}</tr>")
        tags = "".join(f'<span class="tag">{esc(labels.name(f))}: {esc(first.get(f))}</span>'
                       for f in ("category", "challenge") if f in first and value_text(first.get(f)) != DASH)
        text = " ".join(value_text(first.get(f)) for f in ("prompt", "category", "challenge", "input_caption",
                                                            "output_caption") if f in first).lower()
        sections.append(
            f'<section class="prompt" id="prompt-{esc(anchor)}" data-text="{esc(text)}">'
            f'<div class="meta">#{esc(first.get("prompt_index"))} · prompt_id {esc(prompt_id)} {tags}</div>'
            f"{_captions_html(first, edit)}<table>{header}{''.join(body)}</table></section>")
    return "".join(sections), len(sections)


def write_gallery(sweep: Sweep, path: Path, summary: Table, formats: dict[str, str] | None = None,
                  provenance: dict | None = None) -> list[Path]:
    """The page at ``path``; returns it and the edit inputs copied beside it."""
    from evalrun.results import atomic_write_text

    path = Path(path)
    page_dir = path.parent
    labels = summary.labels
    copied: list[Path] = []
    prompts, n_prompts = prompts_html(sweep, page_dir, formats, labels, copied)
    consts = sweep.constants()
    const_html = ", ".join(f"<code>{esc(k)}={esc(v)}</code>" for k, v in consts.items())
    sweeps = ", ".join(f'<a href="{esc(rel_url(d, page_dir))}/">{esc(d)}</a>' for d in sweep.sweep_dirs)
    varying = ", ".join([*(labels(k) for k in sweep.keys),
                         *(f"{labels(c)} (with {labels(k)})" for c, k in sweep.moves_with.items())]) or "seed only"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>evalrun sweep gallery</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>Sweep gallery</h1>
{warnings_html(sweep, provenance, labels)}
<p class="meta">Sweeps: {sweeps} · {len(sweep.runs)} runs · varying: {esc(varying)}</p>
<h2>Summary</h2>
{summary_html(sweep, summary, page_dir)}
<p class="meta">Constant settings: {const_html or "none"}</p>
<h2>Images</h2>
<p class="meta">Underlined: the best per-image score of a row (single images, not a significance test).</p>
<div class="controls"><label>Filter prompts <input id="filter" type="search" placeholder="text, category, challenge"></label>
 <span class="meta"><span id="count">{n_prompts}</span> of {n_prompts} prompts</span>
 · <label>Image size <input id="size" type="range" min="64" max="512" step="16" value="160"></label></div>
{prompts}
<script>{SCRIPT}</script>
</body></html>
"""
    atomic_write_text(path, page)
    return [path, *copied]
