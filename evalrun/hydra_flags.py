"""The command line's Hydra parts checked before Hydra runs, each answered in one line that names the fix:
a group option no config has (Hydra prints a page of options), a launcher whose plugin is missing (Hydra
says only "Could not load"), two run modes at once (a traceback), and ``hydra.job.chdir=true`` (every
relative path would then be read from the job's dir).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from evalrun.paths import CONF_DIR

# evalrun's launcher presets: the plugin module each needs, and the extra that installs it.
LAUNCHERS = {"evalrun_joblib": ("hydra_plugins.hydra_joblib_launcher", "joblib"),
             "evalrun_submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
             "evalrun_submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
             "evalrun_ray": ("hydra_plugins.hydra_ray_launcher", "ray")}
# Hydra's mutually exclusive modes, by their long and short flags.
MODES = {"--run": "-r", "--multirun": "-m", "--cfg": "-c", "--info": "-i", "--shell-completion": "-sc"}


# Hydra's own launcher and sweeper options, and those its launcher plugins register (beside conf/hydra/*/).
HYDRA_OPTIONS = {"launcher": ("basic", "joblib", "submitit_local", "submitit_slurm", "ray"), "sweeper": ("basic",)}


def hydra_problem(argv: Sequence[str]) -> str | None:
    return _misspelt_option(argv) or _launcher_problem(argv) or _modes_problem(argv) or _chdir_problem(argv)


def nearest(name: str, known: Iterable[str], cutoff: float) -> str | None:
    import difflib  # only once a name is unknown

    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=cutoff)
    return close[0] if close else None


def option_in(root: Path | Any, group: str, option: str) -> bool:
    return (root / group / f"{option}.yaml").is_file()


def no_such_option(group: str, option: str, valid: Iterable[str] | None = None) -> str:
    """``group=option`` refused, with the nearest option and the valid ones (default: ``conf/<group>/``)."""
    valid = sorted(valid if valid is not None else (p.stem for p in (CONF_DIR / group).glob("*.yaml")))
    near = nearest(option, valid, 0.6)
    hint = f"did you mean {group}={near}? " if near else ""
    return (f"{group}={option}: no such {group.rsplit('/', 1)[-1]}; {hint}valid: {', '.join(valid)} (or "
            f"{group}/{option}.yaml in a config dir of your own on hydra.searchpath)")


def _misspelt_option(argv: Sequence[str]) -> str | None:
    """``hydra/launcher=joblb``: a near-spelling of a known launcher or sweeper (Hydra prints a page of
    options). A name far from all of them may be a plugin's of your own: left to Hydra."""
    for arg in argv:
        found = re.fullmatch(r"hydra/(launcher|sweeper)=([\w\-]+)", arg)
        if not found:
            continue
        group, name = found.groups()
        known = {*HYDRA_OPTIONS[group], *(p.stem for p in (CONF_DIR / "hydra" / group).glob("*.yaml"))}
        if name not in known and nearest(name, known, 0.75):
            return no_such_option(f"hydra/{group}", name, known)
    return None


def _launcher_problem(argv: Sequence[str]) -> str | None:
    """A launcher preset whose Hydra plugin is not installed, or the SLURM one on a machine without SLURM
    (submitit fails with a traceback at the first job)."""
    import importlib.util
    import shutil

    for arg in argv:
        if not arg.startswith("hydra/launcher="):
            continue
        name = arg.split("=", 1)[1]
        if name not in LAUNCHERS:
            return None
        module, extra = LAUNCHERS[name]
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"hydra/launcher={name} needs its Hydra plugin: pip install -e \".[{extra}]\" (or evalrun[{extra}])"
        if name == "evalrun_submitit_slurm" and shutil.which("sbatch") is None:
            return (f"hydra/launcher={name}: this machine has no SLURM (sbatch not found); submit from the cluster's "
                    f"login node, or use hydra/launcher=evalrun_submitit_local or evalrun_joblib here")
    return None


def _modes_problem(argv: Sequence[str]) -> str | None:
    """Two of Hydra's modes (``-m --cfg job``): Hydra raises a ValueError with a traceback."""
    given = [long for long, short in MODES.items() if any(a in (long, short) or a.startswith(long + "=") for a in argv)]
    if len(given) > 1:
        return (f"{' and '.join(given)} cannot be given together (one mode at a time); to see a sweep's job config, "
                f"run --cfg job with one value per key")
    return None


def _chdir_problem(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if re.fullmatch(r"\+*hydra\.job\.chdir=(?i:true|yes|on|1)", arg):
            return (f"{arg}: evalrun writes each job's files into its job dir itself and reads relative paths "
                    f"(prompts.path, model.path, reference.path) from where you launch it; leave hydra.job.chdir false")
    return None
