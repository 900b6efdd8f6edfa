"""Entry point: ``python -m evalrun [overrides]`` or ``evalrun [overrides]`` (Hydra app)."""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from evalrun.errors import EvalrunError

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger("evalrun")


def safe_dirname(overrides: str) -> str:
    """A job dir name from the overrides: no path separators, at most ~150 characters."""
    name = re.sub(r"[/\\:]+", "_", overrides).strip("._") or "run"
    return name if len(name) <= 150 else name[:130] + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]


OmegaConf.register_new_resolver("evalrun_dirname", safe_dirname, replace=True)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    from evalrun.run import run

    try:
        run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except EvalrunError as exc:
        # One clear line on stderr, not a traceback: these are mistakes the user can fix.
        # The job's log file gets it too (the console handler would print it twice).
        record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (exc,), None)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
        print(f"evalrun: error: {exc}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # In a sweep, fail this job only: Hydra runs the others, then exits non-zero
            # (SystemExit would stop the whole sweep at the first bad job).
            raise
        sys.exit(2)


def check_metric_names(argv: list[str]) -> str | None:
    """Hydra reports an unknown option in a list group as "Could not load" without listing the
    valid ones; name them here (the metrics group is the one users pass lists to)."""
    valid = sorted(p.stem for p in (Path(CONF_DIR) / "metrics").glob("*.yaml"))
    for arg in argv:
        match = re.fullmatch(r"\+?metrics=\[?([^\]]*)\]?", arg)
        if match:
            unknown = [n.strip() for n in match.group(1).split(",") if n.strip() and n.strip() not in valid]
            if unknown:
                return f"unknown metric(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
    return None


def cli() -> None:
    """Console-script and ``python -m evalrun`` entry."""
    problem = check_metric_names(sys.argv[1:])
    if problem:
        print(f"evalrun: error: {problem}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
