"""Classes named by import path (``package.module:Class``) where a registry name is expected.

A task (``model.task``) or a feature extractor (``metrics.<m>.feature_extractor``) of your own is
one module plus one yaml: the yaml names the class by its import path, and evalrun's registries
need no edit (README, "Extending evalrun"). The module is imported from ``sys.path`` like any
Python module: it runs its own code, as a task or backbone must, so name only code you trust.
"""

from __future__ import annotations

import importlib
import importlib.util
import re

from evalrun.errors import ConfigError

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_import_path(name: object) -> bool:
    return isinstance(name, str) and bool(IMPORT_PATH.match(name))


def check_findable(spec: str, key: str) -> None:
    """The module exists (found, not imported: nothing heavy runs during validation)."""
    module = spec.split(":")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing or not a package
        found = False
    if not found:
        raise ConfigError(f"{key}={spec!r}: no module {module!r} on the Python path; install the package or add "
                          f"its folder to PYTHONPATH")


def source_sha256(spec: str) -> str | None:
    """The sha256 of the file that defines the class ``pkg.module:Class`` (or ``pkg.module.Class``) names
    (a package's submodule, not its ``__init__``); None where there is none, or where it cannot be imported
    (the run's own import reports why): a run keyed by it is computed again when that code is edited."""
    module, _, name = spec.partition(":") if ":" in spec else spec.rpartition(".")
    try:
        return class_source_sha256(getattr(importlib.import_module(module), name))
    except Exception:  # noqa: BLE001 - the plugin's own import error is reported where it is used
        return None


def class_source_sha256(obj: object) -> str | None:
    """The sha256 of the file that defines ``obj`` (None for one without a file, e.g. built in C)."""
    import inspect

    from evalrun.hashing import file_sha256

    try:
        path = inspect.getsourcefile(obj)  # type: ignore[arg-type]
        return file_sha256(path) if path else None
    except (TypeError, OSError):
        return None


def load_class(spec: str, key: str, base: type) -> type:
    """The class ``module:Class``, checked to be a subclass of ``base``."""
    import inspect

    check_findable(spec, key)
    module, name = spec.split(":")
    try:
        cls = getattr(importlib.import_module(module), name, None)
    except Exception as exc:  # noqa: BLE001 - the plugin's own code: its first line, not a traceback
        raise ConfigError(f"{key}={spec!r}: importing {module} failed ({_first(exc)})") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{key}={spec!r} is not a {base.__module__}.{base.__name__} subclass; "
                          f"see README, \"Extending evalrun\"")
    if inspect.isabstract(cls):
        raise ConfigError(f"{key}={spec!r} leaves {', '.join(sorted(cls.__abstractmethods__))} unimplemented; "
                          f"see README, \"Extending evalrun\"")
    return cls


def build(cls: type, spec: str, where: str, /, **kwargs):
    """``cls(**kwargs)`` for a class of your own: an error its constructor raises becomes one line naming
    the config key ``where`` (evalrun's own errors, e.g. a missing weights file, pass as they are)."""
    from evalrun.errors import EvalrunError

    try:
        return cls(**kwargs)
    except EvalrunError:
        raise
    except Exception as exc:  # noqa: BLE001 - the plugin's own code
        raise EvalrunError(f"{where}={spec!r}: building it failed ({_first(exc)})") from None


def _first(exc: BaseException) -> str:
    from evalrun.errors import first_line

    return f"{type(exc).__name__}: {first_line(exc, 200)}"
