"""Shared test setup: offline, a per-session evalrun cache, and helpers to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
PARTI_TSV = SHARED / "PartiPrompts.tsv"
PHOTOS = SHARED / "photos"

# Never wait on a hub that cannot be reached (offline retries take minutes, see NOTES.md).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def evalrun_cache(tmp_path_factory) -> Path:
    """One cache for the session: tiny models are built once and then loaded from disk."""
    cache = Path(os.environ.get("EVALRUN_TEST_CACHE") or tmp_path_factory.mktemp("evalrun-cache"))
    os.environ["EVALRUN_CACHE"] = str(cache)
    return cache


def run_cli(*overrides: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m evalrun OVERRIDES`` in a subprocess, as a user would type it."""
    proc = subprocess.run([sys.executable, "-m", "evalrun", *overrides], cwd=cwd or REPO, capture_output=True,
                          text=True, env={**os.environ, "HYDRA_FULL_ERROR": "0"}, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"evalrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def compose(*overrides: str):
    """The config the CLI would build for ``overrides`` (Hydra's compose API, same conf/)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import evalrun.__main__  # noqa: F401  (registers the resolver the hydra config uses)

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))
