"""What a run prints: one line per phase and a progress line every few seconds, never a loading bar.

Library progress bars (diffusers, transformers, the hub client, datasets) are switched off:
in a log file they leave carriage returns and escape codes, and in a sweep of hundreds of
jobs they drown the lines that matter.
"""

from __future__ import annotations

import logging
import os
import time
import warnings

log = logging.getLogger("evalrun")


QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error",
             "TQDM_DISABLE": "1"}
QUIET_LOGGERS = ("diffusers", "transformers", "huggingface_hub", "datasets", "urllib3", "PIL")


def quiet_libraries() -> None:
    """Silence loading bars and chatty warnings of the libraries evalrun drives (the Python API puts
    them back after each call: evalrun.api)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level != logging.ERROR:  # setLevel clears every logger's cache: once, not per job
            logger.setLevel(logging.ERROR)
    # diffusers passes huggingface_hub an argument it deprecated: a two-line warning before every model load.
    warnings.filterwarnings("ignore", message="The `local_dir_use_symlinks` argument is deprecated", category=UserWarning)


class Phase:
    """``with Phase("generate", total=N) as p: p.advance(k)``: a start line, progress lines at most
    every ``every`` seconds, and an end line with the time taken."""

    def __init__(self, name: str, total: int | None = None, unit: str = "images", every: float = 10.0) -> None:
        self.name, self.total, self.unit, self.every = name, total, unit, every
        self.done = 0

    def __enter__(self) -> "Phase":
        self.start = self.last = time.perf_counter()
        log.info("%s%s", self.name, f": {self.total} {self.unit}" if self.total else "")
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every and self.total:
            rate = self.done / max(now - self.start, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("nan")
            log.info("%s: %d/%d %s (%.0f%%, %.2f/s, ~%.0f s left)", self.name, self.done, self.total, self.unit,
                     100 * self.done / self.total, rate, left)
            self.last = now

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            log.info("%s: done in %.1f s", self.name, time.perf_counter() - self.start)
