"""Every experiment config composes and validates; the smoke sweep runs end to end via the CLI."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import REPO, compose, run_cli
from evalrun.config import validate

EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_validates(name):
    cfg = compose(f"experiment={name}")
    if cfg.model.path.startswith("evalrun/") or not cfg.model.path.startswith("/"):
        validate(cfg)  # hub ids and tiny models validate without loading anything


def test_smoke_sweep_experiment_runs_and_summarises(tmp_path):
    run_cli("experiment=smoke_sweep", f"hydra.sweep.dir={tmp_path}", "-m")
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert sorted(summary["scheduler"]) == ["ddim", "dpm"]
    assert set(summary["clip_score_n"]) == {2}


def test_console_script_is_installed():
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "evalrun"  # installed beside this interpreter by pip
    assert exe.exists(), "the evalrun console script is missing (pip install -e .)"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "scheduler" in out.stdout
