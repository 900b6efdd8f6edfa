"""One exception type for every mistake a user can fix; the entry point prints it as one line."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterable, Iterator


class EvalrunError(Exception):
    """A problem with the user's config, inputs or environment, with the fix in its message."""


class ConfigError(EvalrunError):
    """An invalid config value, raised before any model loads."""


class DirectoryTaken(EvalrunError):
    """The run directory holds another configuration's run: nothing is written there, not even the failure."""

    def __init__(self, message: str, directory: object = None) -> None:
        super().__init__(message)
        self.directory = directory


def true_or_false(key: str, value: Any, null_ok: bool = True) -> Any:
    """``value`` if it is a real bool (or null, where ``null_ok``); else the one-line error. A string such as
    ``no`` or ``off`` is truthy: ``bool()`` would run, and record, the opposite of what was asked."""
    if not isinstance(value, bool) and not (null_ok and value is None):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def looks_local(name: str) -> bool:
    """A path rather than a hub id (``org/name``): absolute, relative to here or home, or nested deeper."""
    return name.startswith(("/", "./", "../", "~")) or "\\" in name or name.count("/") >= 2


def api_words(message: str, metric: str) -> str:
    """``message`` in the Python API's words: a metric's keyword arguments where the runner names config keys."""
    for config, keyword in (("set reference=folder reference.path=", "pass reference="),
                            ("reference.path=", "reference="), (f"metrics.{metric}.", "")):
        message = message.replace(config, keyword)
    return message


@contextlib.contextmanager
def in_api_words(metric: str, active: bool = True) -> Iterator[None]:
    """An EvalrunError raised inside, reworded by :func:`api_words` (when ``active``: a metric made by the
    Python API, ``evalrun.metrics.FID(...)``, whose user passes keyword arguments, not config keys)."""
    try:
        yield
    except EvalrunError as exc:
        if active and exc.args:
            exc.args = (api_words(str(exc.args[0]), metric), *exc.args[1:])
        raise


def first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def load_error(what: str, name: str, exc: BaseException, key: str, local_dir: str | os.PathLike | None = None,
               marker: str = "config.json") -> EvalrunError:
    """A one-line error for a failed ``from_pretrained``/``load_dataset`` that says how to fix it.

    ``key`` is the config key that takes a local copy (e.g. ``model.path``). A local folder that is
    not a saved model is told apart from a hub id that cannot be reached: the first says which
    file is missing there (``marker``: ``model_index.json`` for pipelines), the second how to
    download it.
    """
    folder = Path(str(local_dir or name)).expanduser()
    text = first_line(exc)
    chain, seen = [], exc  # diffusers wraps the refusal ("Unable to load weights ..."): read the causes too
    while seen is not None and len(chain) < 8:
        chain.append(str(seen).lower())
        seen = seen.__cause__ or seen.__context__
    if any("weights only load failed" in t or "unpickling" in t for t in chain):
        return EvalrunError(f"{key}={name}: a weights file there is a pickle that would run code when loaded "
                            f"(weights_only=True refused it); evalrun never loads such files: use a safetensors copy "
                            f"of a checkpoint you trust")
    if any(s in str(exc) for s in ("deserializing header", "HeaderTooLarge", "invalid load key", "MetadataIncompleteBuffer")):
        return EvalrunError(f"{key}={name}: a weights file there is not a weights file ({text}); download it again")
    if folder.is_dir():
        if not (folder / marker).exists():
            return EvalrunError(f"{key}={name}: the folder has no {marker}, so it is not a saved {what}; point "
                                f"{key} at the folder that save_pretrained wrote (the one holding {marker})")
        return EvalrunError(f"could not load {what} from {key}={name}: {text}")
    if looks_local(str(name)) and not folder.exists():  # a hub id is "org/name"; this is a path
        return EvalrunError(f"{key}={name}: no such folder; point {key} at the folder that save_pretrained wrote "
                            f"(the one holding {marker}), or give a hub id")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or any(
        s in text.lower() for s in ("offline", "not fully cached", "connection", "resolve", "couldn't reach"))
    reason = "it is not in the local Hugging Face cache and the hub cannot be reached" if offline else text
    return EvalrunError(f"could not load {what} {name!r}: {reason}. Download it once where there is network "
                        f"(`hf download {name} --local-dir DIR`) and set {key}=DIR")


def by_problem(failures: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(job, problem) pairs as problem -> its jobs, in the order first seen: a problem many jobs of a sweep
    share (a missing model) is said once, not once per job."""
    found: dict[str, list[str]] = {}
    for job, problem in failures:
        found.setdefault(problem, []).append(job)
    return found


def jobs_text(jobs: list[str], one: str = "") -> str:
    """``job`` (after ``one``) for a single job, ``N jobs (first, ...)`` for several."""
    return f"{one}{jobs[0]}" if len(jobs) == 1 else f"{len(jobs)} jobs ({jobs[0]}, ...)"
