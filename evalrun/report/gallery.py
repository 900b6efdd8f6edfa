"""One self-contained HTML page: the summary table, then for each prompt every run's images side by side.

Opens from the file system with no server: the data is written into the page (a ``fetch()`` of
JSON fails under ``file://``), images are linked by relative paths, and every piece of text from
the runs (prompts, config values, paths) is HTML-escaped. Configurations are the columns; seeds
(and image indices) the rows; each image carries its per-image scores, the best of a row in bold.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from evalrun.report.sweep import value_text
from evalrun.report.tables import DASH, Table, metric_format

if TYPE_CHECKING:
    from evalrun.report.sweep import Sweep

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;--img:160px}
h1{font-size:1.4em}h2{font-size:1.15em;margin:1.6em 0 .2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
th{background:#f4f4f4;font-weight:600}td.num{text-align:right;white-space:nowrap}.best{font-weight:700}
.prompt{border-top:2px solid #888;margin-top:1.2em;padding-top:.3em}.prompt p{margin:.2em 0 .4em;font-size:1.05em}
.meta{color:#666;font-size:.85em}.tag{background:#eef;border-radius:3px;padding:0 4px;margin-right:4px}
.cell img{width:var(--img);height:auto;display:block;image-rendering:auto;background:#eee}
.score{font-size:.8em;color:#333}.missing{color:#a00;font-size:.85em}
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


def _groups(sweep: Sweep) -> list[tuple[tuple, pd.DataFrame]]:
    keys = sweep.row_keys
    out = []
    for label, g in sweep.runs.groupby(keys, dropna=False, sort=True):
        out.append((label if isinstance(label, tuple) else (label,), g.sort_values("seed")))
    return out


def _group_header(keys: list[str], label: tuple) -> str:
    return "<br>".join(f"{esc(k)}=<b>{esc(v)}</b>" for k, v in zip(keys, label))


def summary_html(sweep: Sweep, table: Table, page_dir: Path) -> str:
    """The summary table with, per configuration, links to its run dirs (one per seed)."""
    keys = sweep.row_keys
    head = "".join(f"<th>{esc(k)}</th>" for k in keys) + "".join(
        f"<th>{esc(table.headers[c])}</th>" for c in table.columns) + "<th>runs</th>"
    body = []
    for label, runs in _groups(sweep):
        cells = []
        for column in table.columns:
            hit = table.cell(label, column)
            text = DASH if hit is None else esc(hit["cell"])
            cls = "num best" if hit is not None and hit["best"] else "num"
            cells.append(f'<td class="{cls}">{text}</td>')
        links = " ".join(f'<a href="{esc(rel_url(Path(r.run_dir), page_dir))}/">seed {esc(r.seed)}</a>'
                         for r in runs.itertuples(index=False))
        body.append("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in label) + "".join(cells) + f"<td>{links}</td></tr>")
    note = f'<p class="meta">{esc(table.note)}; best per column in bold.</p>' if table.note else ""
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{note}"


def _score_html(row: pd.Series | None, metrics: list[str], best: dict[str, float], fmts: dict[str, str]) -> str:
    parts = []
    for m in metrics:
        v = pd.to_numeric(row.get(m), errors="coerce") if row is not None else np.nan
        if not np.isfinite(v):
            continue
        cls = "score best" if m in best and v == best[m] else "score"
        parts.append(f'<div class="{cls}">{esc(m)} {v:{fmts[m]}}</div>')
    return "".join(parts)


def prompts_html(sweep: Sweep, page_dir: Path, formats: dict[str, str] | None = None) -> tuple[str, int]:
    """One section per prompt: a table with configurations as columns and (seed, image) as rows."""
    frame = sweep.per_image()
    if frame.empty or "prompt_id" not in frame:
        return '<p class="missing">No per_image.csv found in the runs.</p>', 0
    groups = _groups(sweep)
    keys = sweep.row_keys
    metrics = sweep.per_image_metrics()
    fmts = {m: metric_format(m, pd.to_numeric(frame[m], errors="coerce"), formats) for m in metrics}
    index = {(r["run_dir"], str(r["prompt_id"]), int(r["image_index"])): r for _, r in frame.iterrows()}
    order = frame.groupby("prompt_id", sort=False)["prompt_index"].min().sort_values(kind="stable")
    image_size = {c: int(sweep.runs[c].iloc[0]) for c in ("width", "height")
                  if c in sweep.runs and pd.to_numeric(sweep.runs[c], errors="coerce").nunique() == 1}
    dims = "".join(f' {k}="{v}"' for k, v in image_size.items())
    by_prompt = dict(tuple(frame.groupby("prompt_id", sort=False)))
    seed_runs = [{int(r.seed): r.run_dir for r in runs.itertuples(index=False)} for _, runs in groups]
    header = "<tr><th>seed</th>" + "".join(f"<th>{_group_header(keys, label)}</th>" for label, _ in groups) + "</tr>"
    sections = []
    for prompt_id in order.index:
        rows_p = by_prompt[prompt_id]
        first = rows_p.iloc[0]
        lines = sorted({(int(s), int(i)) for s, i in zip(rows_p["seed"], rows_p["image_index"])})
        body = []
        for seed, image_index in lines:
            found = [index.get((seeds[seed], str(prompt_id), image_index)) if seed in seeds else None
                     for seeds in seed_runs]
            best = {}
            for m in metrics:
                direction = sweep.direction(m)
                vals = [pd.to_numeric(r.get(m), errors="coerce") for r in found if r is not None]
                vals = [v for v in vals if np.isfinite(v)]
                if direction is not None and len(vals) >= 2:
                    best[m] = max(vals) if direction else min(vals)
            cells = []
            for row in found:
                if row is None:
                    cells.append('<td class="cell"><span class="missing">no image</span></td>')
                    continue
                src = rel_url(Path(row["run_dir"]) / str(row["path"]), page_dir)
                title = f"{row['run_dir']}/{row['path']} (generator seed {value_text(row.get('generator_seed'))})"
                cells.append(f'<td class="cell"><img src="{esc(src)}" alt="{esc(row["prompt"])}" title="{esc(title)}"'
                             f' loading="lazy"{dims}>{_score_html(row, metrics, best, fmts)}</td>')
            label = f"seed {seed}" + (f" · #{image_index}" if len(lines) > len({s for s, _ in lines}) else "")
            body.append(f"<tr><th>{esc(label)}</th>{''.join(cells)}</tr>")
        tags = "".join(f'<span class="tag">{esc(f)}: {esc(first.get(f))}</span>' for f in ("category", "challenge")
                       if f in first and value_text(first.get(f)) != "–")
        text = " ".join(value_text(first.get(f)) for f in ("prompt", "category", "challenge")).lower()
        sections.append(
            f'<section class="prompt" id="prompt-{esc(prompt_id)}" data-text="{esc(text)}">'
            f'<div class="meta">#{esc(first.get("prompt_index"))} · prompt_id {esc(prompt_id)} {tags}</div>'
            f"<p>{esc(first.get('prompt'))}</p><table>{header}{''.join(body)}</table></section>")
    return "".join(sections), len(sections)


def write_gallery(sweep: Sweep, path: Path, summary: Table, formats: dict[str, str] | None = None) -> Path:
    from evalrun.results import atomic_write_text

    path = Path(path)
    page_dir = path.parent
    prompts, n_prompts = prompts_html(sweep, page_dir, formats)
    consts = sweep.constants()
    const_html = ", ".join(f"<code>{esc(k)}={esc(v)}</code>" for k, v in consts.items())
    sweeps = ", ".join(f'<a href="{esc(rel_url(d, page_dir))}/">{esc(d)}</a>' for d in sweep.sweep_dirs)
    missing = (f'<p class="missing">Not complete, left out: {esc(", ".join(sweep.missing))}</p>'
               if sweep.missing else "")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>evalrun sweep gallery</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body>
<h1>Sweep gallery</h1>
<p class="meta">Sweeps: {sweeps} · {len(sweep.runs)} runs · varying: {esc(", ".join(sweep.keys) or "seed only")}</p>
{missing}
<h2>Summary</h2>
{summary_html(sweep, summary, page_dir)}
<p class="meta">Constant settings: {const_html or "none"}</p>
<h2>Images</h2>
<div class="controls"><label>Filter prompts <input id="filter" type="search" placeholder="text, category, challenge"></label>
 <span class="meta"><span id="count">{n_prompts}</span> of {n_prompts} prompts</span>
 · <label>Image size <input id="size" type="range" min="64" max="512" step="16" value="160"></label></div>
{prompts}
<script>{SCRIPT}</script>
</body></html>
"""
    atomic_write_text(path, page)
    return path
