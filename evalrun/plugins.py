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
    """The sha256 of the file of the module that ``pkg.module:Class`` (or ``pkg.module.Class``) names, found
    as ``check_findable`` finds it (None where there is none): a run keyed by it is computed again when
    that code is edited, as the feature cache already is."""
    from evalrun.hashing import file_sha256

    module = spec.partition(":")[0] if ":" in spec else spec.rpartition(".")[0]
    try:
        found = importlib.util.find_spec(module) if module else None
    except (ImportError, ValueError):
        return None
    origin = getattr(found, "origin", None)
    if not origin or not origin.endswith(".py"):
        return None
    try:
        return file_sha256(origin)
    except OSError:
        return None


def load_class(spec: str, key: str, base: type) -> type:
    """The class ``module:Class``, checked to be a subclass of ``base``."""
    check_findable(spec, key)
    module, name = spec.split(":")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{key}={spec!r} is not a {base.__module__}.{base.__name__} subclass; "
                          f"see README, \"Extending evalrun\"")
    return cls
