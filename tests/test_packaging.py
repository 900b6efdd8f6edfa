"""What `pip install evalrun` gives: a wheel with the config and data inside, whose CLI runs from any
directory (no checkout beside it)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                           "-w", str(out), "-q"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return next(out.glob("evalrun-*.whl"))


def test_the_wheel_holds_the_config_and_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "evalrun/conf/config.yaml" in names and "evalrun/conf/model/sd15.yaml" in names
    assert "evalrun/conf/hydra/launcher/evalrun_joblib.yaml" in names
    assert "hydra_plugins/evalrun_sweeper/evalrun_sweeper.py" in names  # the default sweeper: Hydra finds it there
    assert "evalrun/data/edit_demo/edits.csv" in names and "evalrun/data/parti_sample.tsv" in names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


@pytest.mark.slow
def test_the_installed_wheel_runs_from_another_directory(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # The new venv sees this one's dependencies (torch, diffusers...) but not its editable evalrun.
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": ""}
    where = subprocess.run([str(python), "-c", "import evalrun.paths as p; print(p.CONF_DIR)"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=120)
    assert where.stdout.strip().startswith(site), where.stdout + where.stderr  # the installed copy, not the checkout
    for command in (["-m", "evalrun", "--help"],
                    ["-m", "evalrun", "experiment=edit_demo", "prompts.limit=1", "steps=2", "hydra.run.dir=run"],
                    ["-m", "evalrun", "prompts.limit=1", "steps=2", "seed=0,1", "metrics=[]", "hydra.sweep.dir=sweep", "-m"]):
        done = subprocess.run([str(python), *command], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert (work / "run" / "run.json").exists()  # the bundled edit set was found inside the package
    assert len(list((work / "sweep").glob("*/run.json"))) == 2  # the installed sweeper plugin ran the sweep
    assert (venv / "bin" / "evalrun").exists()
