"""Hydra launchers: a sweep through the joblib and submitit_local launchers gives the same runs and
the same numbers as through the basic launcher; evalrun's launcher presets compose and validate.

Run with the plugins installed (``pip install -e ".[joblib,slurm]"``); skipped without them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO, run_cli

HAVE = {name: importlib.util.find_spec(f"hydra_plugins.hydra_{name}_launcher") is not None
        for name in ("joblib", "submitit", "ray")}
needs_plugins = pytest.mark.skipif(not (HAVE["joblib"] and HAVE["submitit"]),
                                   reason='needs pip install -e ".[joblib,slurm]"')

# The session's smoke_sweep fixture is this sweep (2 schedulers x seeds 0,1) through the basic launcher;
# the parallel launchers run its seed-0 half (2 jobs side by side), each job a worker process of its own.
SWEEP = ("experiment=smoke_sweep", "seed=0")
LAUNCHERS = {
    "joblib": ("hydra/launcher=evalrun_joblib", "hydra.launcher.n_jobs=2"),
    "submitit_local": ("hydra/launcher=evalrun_submitit_local",),
}
# The same BLAS/OpenMP thread count in every process. joblib gives each worker
# cpu_count // n_jobs threads, and CPU float results depend on the thread count: without this,
# the joblib sweep's images differ by a few uint8 levels and CLIP scores by ~5e-5 relative.
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, evalrun_cache, smoke_sweep) -> dict[str, Path]:
    if not (HAVE["joblib"] and HAVE["submitit"]):
        pytest.skip('needs pip install -e ".[joblib,slurm]"')
    root = tmp_path_factory.mktemp("launchers")
    saved = {k: os.environ.get(k) for k in THREADS}
    os.environ.update(THREADS)
    try:
        out = {"basic": smoke_sweep}
        for name, extra in LAUNCHERS.items():
            t0 = time.perf_counter()
            run_cli(*SWEEP, *extra, f"hydra.sweep.dir={root / name}", "-m")
            print(f"{name}: {time.perf_counter() - t0:.1f} s")
            out[name] = root / name
        return out
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _runs(sweep: Path, seed: int | None = None) -> pd.DataFrame:
    frame = pd.concat([pd.read_csv(p).assign(job=p.parent.name) for p in sweep.glob("*/metrics.csv")])
    frame = frame if seed is None else frame[frame["seed"] == seed]
    return frame.sort_values("job").reset_index(drop=True)


def _pixels(png: Path) -> np.ndarray:
    with Image.open(png) as image:
        return np.asarray(image.convert("RGB"))


def _summary(sweep: Path) -> pd.DataFrame:
    return pd.read_csv(sweep / "summary.csv").sort_values(["scheduler"]).reset_index(drop=True)


@needs_plugins
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launcher_gives_the_same_runs_and_identical_numbers(sweeps, launcher):
    basic, other = sweeps["basic"], sweeps[launcher]
    runs, ref = _runs(other), _runs(basic, seed=0)
    assert runs["job"].tolist() == ref["job"].tolist() and len(runs) == 2  # same job dirs
    assert not (other / "failed_runs.csv").exists()
    assert runs["clip_score"].tolist() == ref["clip_score"].tolist()       # exactly
    for job in ref["job"]:
        for png in sorted((basic / job / "images").glob("*.png")):  # pixels (the files also hold timings)
            assert np.array_equal(_pixels(other / job / "images" / png.name), _pixels(png)), (job, png.name)
    summary = _summary(other)  # written by the callback after the parallel jobs: both runs, each its own row
    assert summary["clip_score_n"].tolist() == [1, 1] and summary["seeds"].astype(str).tolist() == ["0", "0"]
    assert summary["clip_score_mean"].tolist() == ref.sort_values("scheduler")["clip_score"].tolist()
    assert (other / "report" / "index.html").exists()


def _interval(job_dir: Path) -> tuple[float, float]:
    """When a job started (Hydra wrote its .hydra/config.yaml) and finished (run.json, written last)."""
    return (job_dir / ".hydra" / "config.yaml").stat().st_mtime, (job_dir / "run.json").stat().st_mtime


@needs_plugins
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_launchers_ran_jobs_side_by_side(sweeps, launcher):
    intervals = sorted(_interval(p.parent) for p in sweeps[launcher].glob("*/run.json"))
    assert any(start < end_prev for (_, end_prev), (start, _) in zip(intervals, intervals[1:])), intervals
    if launcher == "submitit_local":  # one submitit job (a process of its own) per sweep job
        assert len(list((sweeps[launcher] / ".submitit").glob("*/*_result.pkl"))) == 2


@needs_plugins
def test_concurrent_summary_refreshes_keep_every_finished_run(sweeps, tmp_path, monkeypatch):
    """The interleaving of two workers whose jobs finish at once, made deterministic: worker A
    has read the sweep (one finished run) and is summarising when worker B's run finishes and B
    writes its summary (two runs); then A writes."""
    from evalrun import aggregate

    first, second = sorted(p.parent for p in sweeps["basic"].glob("*seed=0*/run.json"))[:2]
    sweep = tmp_path / "sweep"
    shutil.copytree(first, sweep / first.name)
    summarise = aggregate.summarise
    worker_b: list[subprocess.Popen] = []

    def summarise_while_b_finishes(runs, grouped=None):
        if worker_b:  # A's second pass, after it saw the set of runs grow
            return summarise(runs, grouped)
        shutil.copytree(second, sweep / second.name)  # B's run completes...
        worker_b.append(subprocess.Popen([sys.executable, "-m", "evalrun.aggregate", str(sweep)],
                                         env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL))
        try:  # ... and B refreshes the summary (a locking fix would make B wait for A instead)
            worker_b[0].wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        return summarise(runs, grouped)

    monkeypatch.setattr(aggregate, "summarise", summarise_while_b_finishes)
    aggregate.write_summary(sweep)  # A
    assert worker_b[0].wait(timeout=60) == 0
    assert pd.read_csv(sweep / "summary.csv")["clip_score_n"].sum() == 2


# ----------------------------------------------------------------------------- presets
def _hydra_cfg(*overrides: str):
    from hydra import compose, initialize_config_dir

    import evalrun.__main__  # noqa: F401  (registers ${evalrun_dirname:} and ${evalrun_n_devices:})
    from evalrun.paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True).hydra


@pytest.mark.skipif(not HAVE["joblib"], reason='needs pip install -e ".[joblib]"')
def test_joblib_preset_runs_one_worker_per_device(monkeypatch):
    monkeypatch.setenv("EVALRUN_FAKE_DEVICES", "0,1,2")
    launcher = _hydra_cfg("hydra/launcher=evalrun_joblib").launcher
    assert launcher._target_.endswith("JoblibLauncher") and launcher.n_jobs == 3 and launcher.backend == "loky"
    monkeypatch.setenv("EVALRUN_FAKE_DEVICES", "")
    assert _hydra_cfg("hydra/launcher=evalrun_joblib").launcher.n_jobs == 1  # no GPU: one job at a time


@pytest.mark.skipif(not HAVE["submitit"], reason='needs pip install -e ".[slurm]"')
def test_submitit_presets(monkeypatch):
    monkeypatch.setenv("EVALRUN_FAKE_DEVICES", "0,1")
    local = _hydra_cfg("hydra/launcher=evalrun_submitit_local", "hydra.sweep.dir=/s").launcher
    assert local._target_.endswith("LocalLauncher") and local.gpus_per_node == 2 and local.timeout_min == 1440
    slurm = _hydra_cfg("hydra/launcher=evalrun_submitit_slurm", "hydra.sweep.dir=/s",
                       "hydra.launcher.partition=gpu", "hydra.launcher.account=proj").launcher
    assert slurm._target_.endswith("SlurmLauncher") and slurm.submitit_folder == "/s/.submitit/%j"
    assert (slurm.partition, slurm.account, slurm.gpus_per_node, slurm.tasks_per_node) == ("gpu", "proj", 1, 1)
    # The presets extend the plugin's typed schema (SlurmQueueConf): values are validated.
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="mem_gb"):
        _hydra_cfg("hydra/launcher=evalrun_submitit_slurm", "hydra.launcher.mem_gb=lots")


@pytest.mark.skipif(not HAVE["ray"], reason='needs pip install -e ".[ray]"')
def test_ray_preset_composes():
    launcher = _hydra_cfg("hydra/launcher=evalrun_ray", "hydra.launcher.ray.init.address=auto").launcher
    assert launcher._target_.endswith("RayLauncher") and launcher.ray.init.address == "auto"
    assert launcher.ray.remote.num_gpus == 1


def test_a_launcher_that_cannot_run_here_is_answered_before_hydra():
    import shutil

    from evalrun.override_keys import check_command_line

    if not HAVE["ray"]:  # Hydra alone would say "Could not load 'hydra/launcher/ray'"
        assert 'needs its Hydra plugin: pip install -e ".[ray]"' in check_command_line(["hydra/launcher=evalrun_ray"])
    if shutil.which("sbatch") is None:  # submitit would fail with a traceback at the first job
        assert "this machine has no SLURM (sbatch not found)" in check_command_line(
            ["hydra/launcher=evalrun_submitit_slurm", "seed=0,1", "-m"])
    assert check_command_line(["hydra/launcher=evalrun_joblib", "seed=0,1", "-m"]) is None


def test_a_worker_killed_mid_batch_loses_only_its_own_job(tmp_path):
    """joblib and submitit raise for the whole batch when one worker dies (SIGKILL, out of memory): the
    unfinished jobs run again one at a time, only the one that dies is recorded failed, and the sweep goes
    on (the batches after it, then the summary, which exits non-zero)."""
    from hydra_plugins.evalrun_sweeper.evalrun_sweeper import EvalrunSweeper

    launched = []

    class DyingLauncher:  # seed=1 kills its worker; seed=0 finished before it did
        def launch(self, batch, initial_job_idx):
            launched.append((list(map(tuple, batch)), initial_job_idx))
            if len(batch) > 1:
                (tmp_path / "seed=0" / "run.json").write_text("{}")
                raise RuntimeError("TerminatedWorkerError: A worker process managed by the executor was terminated")
            if batch[0] == ["seed=1"]:
                raise RuntimeError("UncompletedJobError: job has not produced any output")
            return [f"ran {batch[0][0]}"]

    sweeper = EvalrunSweeper(max_batch_size=None, params=None)
    sweeper.launcher, sweeper._lost = DyingLauncher(), 0
    sweeper._job_dir = lambda overrides: tmp_path / overrides[0]
    batch = [["seed=0"], ["seed=1"], ["seed=2"]]
    for overrides in batch:
        (tmp_path / overrides[0]).mkdir()
    assert sweeper._launched(batch, first_job=4) == ["ran seed=2"]
    assert launched == [([("seed=0",), ("seed=1",), ("seed=2",)], 4), ([("seed=1",)], 5), ([("seed=2",)], 6)]
    assert sweeper._lost == 1 and not (tmp_path / "seed=0" / "failed.json").exists()
    failure = json.loads((tmp_path / "seed=1" / "failed.json").read_text())["error"]
    assert "worker process died before the job finished (RuntimeError" in failure and "re-run the sweep" in failure
    # A batch of one is not launched twice: a job that kills its worker would only die again.
    launched.clear()
    assert sweeper._launched([["seed=1"]], first_job=7) == [] and len(launched) == 1 and sweeper._lost == 2
