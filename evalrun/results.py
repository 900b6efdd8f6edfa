"""Where results are written: atomic CSV/JSON writes and the provenance of every number."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

RUN_FILE = "run.json"
PACKAGES = ("evalrun", "torch", "diffusers", "transformers", "torchmetrics", "torch-fidelity",
            "numpy", "scipy", "pandas", "hydra-core", "pillow", "datasets")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same directory and ``os.replace``: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def write_json(data: Any, path: Path) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)  # installed versions do not change within a process
def _versions() -> tuple[tuple[str, str], ...]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return tuple(versions.items())


def library_versions() -> dict[str, str]:
    return dict(_versions())


def stable_hash(data: Any) -> str:
    """Short content hash of JSON-able data (keys sorted), for cache and resume keys."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def finished_run(run_dir: Path, run_key: str) -> dict[str, Any] | None:
    """The run record if this directory already holds a complete run with the same key."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists() or not (Path(run_dir) / "metrics.csv").exists():
        return None
    record = read_json(path)
    return record if record.get("status") == "complete" and record.get("run_key") == run_key else None
