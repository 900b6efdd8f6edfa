"""Shared test setup: offline, one evalrun cache per session, and three ways to run evalrun:

- ``compose(*overrides)``: the config the CLI would build (Hydra's compose API, the packaged conf/);
- ``run_inprocess(*overrides, run_dir=...)``: that config through ``evalrun.run.run`` in this process
  (tiny models, pipelines and metric models stay loaded across tests, as across a sweep's jobs);
- ``cli(*overrides)``: the ``evalrun`` command in this process (argv parsing, Hydra, sweeps, the
  summary callback, one-line errors and exit codes), without paying torch's import again;
- ``run_cli(*overrides)``: ``python -m evalrun`` in a subprocess, where the process itself is what is
  tested (the session's smoke sweep, launchers that start workers, a wheel installed elsewhere).

Shared data (``../shared/data``: PartiPrompts and a dozen real photographs) comes from the
project's shared folder beside the checkout; tests that need it skip with a message saying so
(see README, "Tests and benchmarks").
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
PARTI_TSV = SHARED / "PartiPrompts.tsv"
PHOTOS = SHARED / "photos"
SHARED_HINT = "../shared/data is not beside this checkout (it holds PartiPrompts.tsv and photos/; see README)"

# Never wait on a hub that cannot be reached (offline retries take minutes, see NOTES.md).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
# One BLAS/OpenMP thread in this process and every subprocess: CPU float results depend (at
# round-off) on the thread count, and parallel launchers give each worker fewer threads than a
# lone process; with one thread everywhere, sweeps through any launcher give identical numbers.
# (Also faster for tiny models on 2 cores: no thread synchronisation.)
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: long end-to-end tests (make test runs them; -m 'not slow' skips them)")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small matrices and tiny models run faster on one torch thread than on two on a busy 2-core
    machine (thread hand-offs cost more than they save: the libraries' 2048x2048 ``eigvals`` took
    54 s with two threads and 4.5 s with one), and every implementation a test compares runs under
    the same setting. A module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def evalrun_cache(tmp_path_factory) -> Path:
    """One cache for the session: tiny models are built once and then loaded from disk."""
    cache = Path(os.environ.get("EVALRUN_TEST_CACHE") or tmp_path_factory.mktemp("evalrun-cache"))
    os.environ["EVALRUN_CACHE"] = str(cache)
    return cache


def run_cli(*overrides: str, cwd: Path | None = None, check: bool = True, module: str = "evalrun",
            env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m evalrun OVERRIDES`` in a subprocess, as a user would type it."""
    proc = subprocess.run([sys.executable, "-m", module, *overrides], cwd=cwd or REPO, capture_output=True,
                          text=True, env={**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def cli(*overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """The ``evalrun`` command with ``overrides`` in this process: the same entry (``evalrun.__main__.cli``)
    and exit code as ``run_cli``, with stdout/stderr captured. Logging is restored afterwards, since
    Hydra reconfigures it for each job."""
    from evalrun.__main__ import cli as evalrun_cli

    root, named = logging.getLogger(), logging.getLogger("evalrun")
    saved = (root.handlers[:], root.level, named.handlers[:], named.level, named.propagate, sys.argv)
    out, err, code = io.StringIO(), io.StringIO(), 0
    full_error = os.environ.pop("HYDRA_FULL_ERROR", None)
    try:
        sys.argv = ["evalrun", *overrides]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                evalrun_cli()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        for handler in set(root.handlers + named.handlers) - set(saved[0] + saved[2]):
            handler.close()
        root.handlers[:], named.handlers[:] = saved[0], saved[2]
        root.setLevel(saved[1]), named.setLevel(saved[3])
        named.propagate, sys.argv = saved[4], saved[5]
        if full_error is not None:
            os.environ["HYDRA_FULL_ERROR"] = full_error
    proc = subprocess.CompletedProcess(["evalrun", *overrides], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"evalrun failed ({code}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def compose(*overrides: str):
    """The config the CLI would build for ``overrides`` (Hydra's compose API, same conf/)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import evalrun.__main__  # noqa: F401  (registers the resolver the hydra config uses)
    from evalrun.paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def run_inprocess(*overrides: str, run_dir: Path):
    """Compose ``overrides`` and run them in this process (what one CLI job does); returns run.json's record."""
    from evalrun.run import run

    return run(compose(*overrides), Path(run_dir))


def error_of(*overrides: str, run_dir: Path) -> str:
    """The one-line message of the EvalrunError a run with ``overrides`` raises (fails if none)."""
    from evalrun.errors import EvalrunError

    try:
        run_inprocess(*overrides, run_dir=run_dir)
    except EvalrunError as exc:
        text = str(exc)
        assert "\n" not in text, f"multi-line error: {text!r}"
        return text
    raise AssertionError(f"no error for {overrides}")


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory) -> Path:
    """``experiment=smoke_sweep`` through the real CLI once per session (2 schedulers x 2 seeds, 3 prompts):
    the summary, report and sweep tests all read this one sweep. Under pytest-xdist the workers share
    it: the first to need it runs it, under a lock, in the session's common temp folder."""
    from filelock import FileLock

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        sweep = tmp_path_factory.mktemp("smoke-sweep")
        run_cli("experiment=smoke_sweep", f"hydra.sweep.dir={sweep}", "-m")
        return sweep
    common = tmp_path_factory.getbasetemp().parent  # this session's folder, above each worker's own
    sweep, done = common / "smoke-sweep", common / "smoke-sweep.done"
    with FileLock(str(common / "smoke-sweep.lock")):
        if not done.exists():
            run_cli("experiment=smoke_sweep", f"hydra.sweep.dir={sweep}", "-m")
            done.touch()
    return sweep


def assert_refused_before_import(cases, common=(), heavy=("torch",), message_names_metric=False) -> None:
    """In a fresh interpreter, ``validate(compose(*case, *common))`` must raise ConfigError for every
    case (a tuple of overrides; with ``message_names_metric``, the message names the metric of the
    case's first key) and none of the ``heavy`` modules may have been imported by then."""
    data = json.dumps([[list(case) for case in cases], list(common), message_names_metric])
    code = ("import json, sys; sys.path.insert(0, 'tests'); from conftest import compose\n"
            "from evalrun.config import validate\nfrom evalrun.errors import ConfigError\n"
            f"cases, common, names_metric = json.loads({data!r})\n"
            "for case in cases:\n"
            "    try:\n        validate(compose(*case, *common))\n"
            "    except ConfigError as exc:\n"
            "        assert not names_metric or case[0].split('=')[0].split('.')[1] in str(exc), exc\n"
            "    else:\n        raise SystemExit(f'{case} was accepted')\n"
            f"heavy = sorted(m for m in {list(heavy)!r} if m in sys.modules)\n"
            "print(heavy)\nraise SystemExit(1 if heavy else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
