"""Hydra's config files parsed by libyaml.

``OmegaConf.load`` (which Hydra calls for every config file it composes) asks ``omegaconf._utils`` for a
loader built on PyYAML's pure-Python parser: ~80% of a composition's file reading, 13-14 ms of the
~77 ms one composition of evalrun's config takes, paid by every CLI process and every sweep. The loader
here is OmegaConf's own class (its float and timestamp resolvers, its duplicate-key check, its
constructors) with libyaml's parser in front, so every file loads to the same values (tested over every
packaged config file and Hydra's own). A file that is not valid YAML (an experiment file of the user's on
``hydra.searchpath``) is one line naming the file, line and problem, where Hydra printed its own stack.
Without libyaml (PyYAML built without it) nothing changes.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Iterator

_LOCK = threading.Lock()
_DEPTH = [0]


@functools.lru_cache(maxsize=None)
def libyaml_loader() -> type | None:
    """OmegaConf's loader class with libyaml's parser, or None without libyaml."""
    try:
        from yaml.constructor import SafeConstructor
        from yaml.cyaml import CParser
        from yaml.resolver import Resolver
    except ImportError:
        return None
    from omegaconf import _utils

    import yaml
    from hydra.errors import ConfigCompositionException

    from evalrun.errors import ConfigError

    class ConfigFileError(ConfigError, ConfigCompositionException, yaml.YAMLError):
        """Hydra prints a compact exception as its message alone; callers that catch YAMLError still do."""

    base = _utils.get_yaml_loader()

    class LibyamlOmegaConfLoader(CParser, base):  # CParser first: its parse and compose methods win
        def __init__(self, stream: Any) -> None:  # as yaml.CSafeLoader's: the parser, then the Python halves
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

        def get_single_data(self) -> Any:
            try:
                return super().get_single_data()
            except yaml.MarkedYAMLError as exc:
                raise ConfigFileError(not_valid_yaml(exc)) from None

    return LibyamlOmegaConfLoader


def not_valid_yaml(exc: Any) -> str:
    """``FILE, line L, column C: not valid YAML (PROBLEM); fix the file`` from PyYAML's marked error."""
    mark = exc.problem_mark or exc.context_mark
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "a config file"
    problem = "; ".join(str(p) for p in (exc.context, exc.problem) if p)
    return f"{where}: not valid YAML ({problem}); fix the file"


@contextlib.contextmanager
def libyaml_configs() -> Iterator[None]:
    """``OmegaConf.load`` parses with libyaml while the block runs (nested and threaded blocks share it)."""
    from omegaconf import _utils

    loader = libyaml_loader()
    if loader is None:
        yield
        return
    with _LOCK:
        if _DEPTH[0] == 0:
            _ORIGINAL[0] = _utils.get_yaml_loader
            _utils.get_yaml_loader = lambda: loader
        _DEPTH[0] += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH[0] -= 1
            if _DEPTH[0] == 0:
                _utils.get_yaml_loader = _ORIGINAL[0]


_ORIGINAL: list[Any] = [None]
