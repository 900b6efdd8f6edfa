"""Every ``.tex`` table the report writes compiles standalone with pdflatex, booktabs and siunitx.

Needs pdflatex with booktabs and siunitx v3 (Debian: ``apt-get install -y --no-install-recommends
texlive-latex-base texlive-latex-recommended texlive-science``); skipped when they are absent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from evalrun.report import build_report
from report_synthetic import clip_value, config, default_costs, make_run, make_sweep

INSTALL = "apt-get install -y --no-install-recommends texlive-latex-base texlive-latex-recommended texlive-science"


def _tex_ready() -> str | None:
    """None when pdflatex, booktabs and siunitx are there; else why not."""
    if not shutil.which("pdflatex"):
        return f"pdflatex not found (Debian: {INSTALL})"
    if shutil.which("kpsewhich"):
        for sty in ("booktabs.sty", "siunitx.sty"):
            found = subprocess.run(["kpsewhich", sty], capture_output=True, text=True).stdout.strip()
            if not found:
                return f"{sty} not found (Debian: {INSTALL})"
    return None


pytestmark = pytest.mark.skipif(_tex_ready() is not None, reason=_tex_ready() or "")


def _clip(model, scheduler, steps, seed, prompt_id, image_index):
    # negative scores (a sign in the siunitx format) and one clear winner (a bold cell)
    best = (model, scheduler, steps) == ("sd15", "dpm", 3)
    return clip_value(model, scheduler, steps, seed, prompt_id, image_index) - 30 + (8 if best else 0)


def test_every_table_compiles_standalone(tmp_path: Path) -> None:
    sweep_dir = make_sweep(tmp_path / "s", models=("sd14", "sd15"), schedulers=("ddim", "dpm"), steps=(2, 3),
                           seeds=(0, 1, 2), clip=_clip, costs=default_costs)
    make_run(sweep_dir / "euler", config("sd15", "euler", 2, 0), clip=_clip, costs=default_costs, smoke=True)
    labels = tmp_path / "labels.yaml"
    labels.write_text('clip_score: {label: "CLIP_score #1 & 100% ~ok^", unit: "$/{img}"}\n'
                      'model: {values: {sd15: "SD 1.5 <new> | \\\\best"}}\n'
                      'scheduler: {label: "Sampler (ε)"}\n')
    written = build_report([sweep_dir], formats={"fid": ".2e"}, labels=labels, plots=False, gallery=False)
    texs = [p for p in written["tables"] if p.suffix == ".tex"]
    assert len(texs) == 7  # summary, 4 metrics by model, scheduler x steps, CLIP score by category and challenge
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{siunitx}\n\\begin{document}\n"
                   + "".join(f"\\input{{{p.as_posix()}}}\n\\clearpage\n" for p in texs) + "\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    errors = [line for line in log.splitlines()
              if line.startswith("!") or re.search(r"(LaTeX|Package \w+) (Error|Warning)(?!: Label\(s\) may)", line)
              or "multiply defined" in line or "Undefined control sequence" in line]
    assert done.returncode == 0 and not errors, "\n".join(errors) + "\n" + done.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0
    aux = (tmp_path / "doc.aux").read_text()
    for tex in texs:
        label = re.search(r"\\label\{([^}]*)\}", tex.read_text()).group(1)
        assert f"\\newlabel{{{label}}}" in aux, label
    summary = (sweep_dir / "report" / "tables" / "summary.tex").read_text()
    assert r"\bfseries" in summary and "SMOKE MODEL" in summary and r"CLIP\_score \#1 \& 100\% " in summary
    assert re.search(r"S\[table-format=-\d\.\d\(\d\)\]", summary)  # negative CLIP scores: a sign in the format
    assert "{$n$}" in summary  # euler has one seed: n differs, so each value column has an n column
    assert r"Sampler ($\epsilon$)" in summary and r"SD 1.5 \textless{}new\textgreater{} \textbar{}" in summary
