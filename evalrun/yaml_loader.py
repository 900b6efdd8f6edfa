"""A config file that is not valid YAML, named in one line.

``OmegaConf.load`` (which Hydra calls for every config file it composes) raises PyYAML's error, and
Hydra prints it with its whole stack: a user's experiment file on ``hydra.searchpath`` with a missing
bracket was a page of Hydra internals. While :func:`readable_yaml_errors` is active, OmegaConf's own
loader class (the same parser, resolvers, duplicate-key check and constructors: every file loads to
the same values) raises instead one line naming the file, line and problem, as an exception Hydra
prints by its message alone and evalrun's API passes on as a ConfigError.

libyaml's parser was tried here for speed (13-14 ms of a 77 ms composition) and left out: it accepts
files PyYAML refuses (a tab after a colon) and refuses some it accepts (escaped surrogate pairs), so a
file would load in one process and fail in a launcher's worker.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Iterator

_LOCK = threading.Lock()
_DEPTH = [0]
_ORIGINAL: list[Any] = [None]


@functools.lru_cache(maxsize=None)
def loader_with_messages() -> type:
    """OmegaConf's loader class, raising a one-line :class:`ConfigFileError` for invalid YAML."""
    import yaml
    from hydra.errors import ConfigCompositionException
    from omegaconf import _utils

    from evalrun.errors import ConfigError

    class ConfigFileError(ConfigError, ConfigCompositionException, yaml.YAMLError):
        """Hydra prints a compact exception as its message alone; callers that catch YAMLError still do."""

    base = _utils.get_yaml_loader()

    class OmegaConfLoaderWithMessages(base):
        def __init__(self, stream: Any) -> None:
            try:
                super().__init__(stream)  # the reader checks every character here
            except yaml.reader.ReaderError as exc:
                raise ConfigFileError(not_valid_yaml(exc)) from None

        def get_single_data(self) -> Any:
            try:
                return super().get_single_data()
            except (yaml.MarkedYAMLError, yaml.reader.ReaderError) as exc:
                raise ConfigFileError(not_valid_yaml(exc)) from None

    return OmegaConfLoaderWithMessages


def not_valid_yaml(exc: Any) -> str:
    """``FILE, line L, column C: not valid YAML (PROBLEM); fix the file`` from PyYAML's error."""
    import yaml

    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow: a position, no mark
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        return f"{exc.name}, position {exc.position}: not valid YAML ({exc.reason}: {what}); fix the file"
    mark = exc.problem_mark or exc.context_mark
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "a config file"
    problem = "; ".join(str(p) for p in (exc.context, exc.problem) if p)
    return f"{where}: not valid YAML ({problem}); fix the file"


@contextlib.contextmanager
def readable_yaml_errors() -> Iterator[None]:
    """``OmegaConf.load`` names a YAML error in one line while the block runs (nested and threaded blocks
    share it; outside any block, OmegaConf's own loader is back)."""
    from omegaconf import _utils

    loader = loader_with_messages()
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
