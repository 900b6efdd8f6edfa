"""Every experiment config runs through the real CLI (the ``evalrun`` entry, in this process) under the
smoke profile (debug=smoke: the models' tiny twins, 2 prompts, one seed, 2-3 steps), and the console
script is installed."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import cli
from evalrun.paths import CONF_DIR

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_there_are_experiments_to_run():
    assert {"smoke_sweep", "scheduler_comparison", "edit_demo"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs_end_to_end_under_the_smoke_profile(tmp_path, name):
    cli(f"experiment={name}", "debug=smoke", f"hydra.sweep.dir={tmp_path}", "-m")
    summary = pd.read_csv(tmp_path / "summary.csv")
    runs = [pd.read_csv(p).iloc[0] for p in tmp_path.glob("*/metrics.csv")]
    assert runs and not (tmp_path / "failed_runs.csv").exists()
    assert all(r["model_path"].startswith("evalrun/tiny-") for r in runs)  # the twin ran, not the hub checkpoint
    assert set(summary["steps"]) == {2, 3} and set(summary["seeds"].astype(str)) == {"0"}
    assert summary["n_runs"].sum() == len(runs)
    assert (tmp_path / "report" / "report.md").exists()


def test_console_script_is_installed():
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "evalrun"  # installed beside this interpreter by pip
    assert exe.exists(), "the evalrun console script is missing (pip install -e .)"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "scheduler" in out.stdout and "evalrun is powered by Hydra" in out.stdout
