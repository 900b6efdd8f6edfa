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


def hydra_problem(argv: Sequence[str], cli: bool = True) -> str | None:
    """``cli=False``: the Python API's overrides (its sweeps take value lists without ``-m``)."""
    return (_misspelt_option(argv) or _launcher_problem(argv) or _modes_problem(argv) or _chdir_problem(argv)
            or _dirname_problem(argv) or _grammar_problem(argv, cli))


def _grammar_problem(argv: Sequence[str], cli: bool = True) -> str | None:
    """Overrides Hydra's grammar reads otherwise than meant: a value it cannot parse (``Food & Beverage``
    unquoted: a lexer traceback), a list where a group takes one option (``scheduler=[ddim,dpm]``: Hydra merges
    both files into one run, the last one winning), several values without ``-m`` (five lines of "Ambiguous
    value" advising that list)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    multirun = any(a in ("-m", "--multirun") or re.fullmatch(r"\+*hydra\.mode=MULTIRUN", a) for a in argv)
    parser, single = OverridesParser.create(), groups() - {"metrics"}
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            override = parser.parse_overrides([arg])[0]
        except HydraException as exc:
            key, value = arg.split("=", 1)
            return (f"{arg}: Hydra cannot read this value ({str(exc).splitlines()[0]}); quote it, e.g. "
                    f"{_quoted(key, value, cli)}")
        key = override.get_key_element().lstrip("+~")
        kind = override.value_type.name if override.value_type is not None else ""
        if kind == "INTERVAL_SWEEP":  # Hydra's basic sweeper: a traceback
            return (f"{arg}: interval() is a range for an optimising sweeper (Optuna, Nevergrad); a sweep takes "
                    f"values: a list, range(a,b,step) or choice(...)")
        if kind == "GLOB_CHOICE_SWEEP" and key in groups() and not any("hydra.searchpath" in a for a in argv):
            if not override.value().filter(options(key)):  # "Launching 0 jobs", then a summary failure and exit 0
                return f"{arg} matches no {key} option; {key} options: {', '.join(options(key))}"
        if key in single and override.value_type is not None and override.value_type.name == "ELEMENT" \
                and isinstance(override.value(), list):
            names = ",".join(map(str, override.value()))
            if len(override.value()) == 1:
                return f"{arg}: {key} takes one option, not a list: {key}={names}"
            return f"{arg}: {key} takes one option per run; to compare several, sweep them: {key}={names} -m"
        simple_list = override.value_type is not None and override.value_type.name == "SIMPLE_CHOICE_SWEEP"
        if cli and override.is_sweep_override() and not multirun and not key.startswith("hydra") and (
                simple_list or key != "metrics"):  # metrics=glob(clip_*) picks a list: Hydra's
            values = list(override.sweep_string_iterator()) if simple_list else []
            if key == "metrics" and values and not any(v.startswith("[") for v in values):
                return (f"{arg}: a run's metrics are one list, metrics=[{','.join(values)}] (with -m, {arg} would "
                        f"sweep one metric per job)")
            numbers = all(re.fullmatch(r"[-+]?\d+(\.\d*)?(e[-+]?\d+)?", v) for v in values)
            text = "" if not simple_list or numbers or key in single or key == "metrics" else (
                f", or quote it for one value holding a comma: {_quoted(key, arg.split('=', 1)[1], cli)}")
            return f"{arg} gives several values: add -m (--multirun) to run one job per value{text}"
    return None


def _quoted(key: str, value: str, cli: bool) -> str:
    """``key='value'`` (double quotes when the value holds a single one), and how a shell passes it on."""
    if "'" not in value:
        text = f"{key}='{value}'"
        return f'{text} (in a shell: "{text}")' if cli else text
    text = f'{key}="{value}"'
    return f'{text} (in a shell: "{key}=\\"{value}\\"")' if cli else text


def groups() -> set[str]:
    """The packaged config groups (conf/<group>/), Hydra's own left out."""
    return {p.name for p in CONF_DIR.iterdir() if p.is_dir()} - {"hydra"}


def options(group: str) -> list[str]:
    """The packaged options of ``group`` (``conf/<group>/*.yaml``), sorted."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def nearest(name: str, known: Iterable[str], cutoff: float) -> str | None:
    import difflib  # only once a name is unknown

    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=cutoff)
    return close[0] if close else None


def option_in(root: Path | Any, group: str, option: str) -> bool:
    return (root / group / f"{option}.yaml").is_file()


# Sampler names of other tools (A1111 / k-diffusion, diffusers class names) -> evalrun's scheduler options.
SCHEDULER_ALIASES = {"dpmpp_2m": "dpm", "dpmpp_2m_karras": "dpm_karras", "dpmpp_sde": "dpm_sde",
                     "dpmpp_sde_karras": "dpm_sde_karras", "dpmpp_2s": "dpm_single", "dpm_solver": "dpm",
                     "dpmsolvermultistep": "dpm", "euler_ancestral": "euler_a", "k_euler": "euler",
                     "k_euler_a": "euler_a", "k_lms": "lms", "dpm2": "kdpm2", "dpm2_a": "kdpm2_a", "uni_pc": "unipc",
                     "unipcmultistep": "unipc", "pndm_plms": "pndm", "plms": "pndm", "ddim_scheduler": "ddim"}


def suggestions(group: str, option: str, valid: Iterable[str]) -> list[str]:
    """The options ``option`` most likely meant: the same name in other case (``SDXL``), another tool's name for a
    sampler (``dpmpp_2m``), the options it begins (``sd35``: the SD 3.5 presets), else the fewest edits away
    (``sd16``: sd14 and sd15, not sd21 as a similarity ratio ranked them)."""
    valid, wanted = sorted(valid), option.lower().replace("++", "pp").replace("-", "_")
    same = [v for v in valid if v.lower() == wanted]
    alias = SCHEDULER_ALIASES.get(wanted) if group == "scheduler" else None
    if same or alias in valid:
        return same or [alias]
    begun = [v for v in valid if v.lower().startswith(wanted)]
    if begun:
        return begun[:4]
    edits = {v: _edits(wanted, v.lower()) for v in valid}
    fewest = min(edits.values(), default=0)
    if valid and fewest <= max(1, len(wanted) // 3):
        return [v for v in valid if edits[v] == fewest][:3]
    near = nearest(option, valid, 0.6)
    return [near] if near else []


def _edits(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) from ``a`` to ``b``: optimal string alignment."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def no_such_option(group: str, option: str, valid: Iterable[str] | None = None) -> str:
    """``group=option`` refused, with the likely options and the valid ones (default: ``conf/<group>/``)."""
    valid = sorted(valid) if valid is not None else options(group)
    near = suggestions(group.rsplit("/", 1)[-1], option, valid)
    hint = f"did you mean {' or '.join(f'{group}={n}' for n in near)}? " if near else ""
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
    """Two of Hydra's modes (``-m --cfg job``): Hydra raises a ValueError with a traceback. ``-m`` between
    overrides: argparse takes them on one side only and prints its usage page ("unrecognized arguments")."""
    given = [long for long, short in MODES.items() if any(a in (long, short) or a.startswith(long + "=") for a in argv)]
    if len(given) > 1:
        return (f"{' and '.join(given)} cannot be given together (one mode at a time); to see a sweep's job config, "
                f"run --cfg job with one value per key")
    for i, arg in enumerate(argv):
        if arg in ("-m", "--multirun") and any("=" in a and not a.startswith("-") for a in argv[:i]) \
                and any("=" in a and not a.startswith("-") for a in argv[i + 1:]):
            overrides = " ".join(a for a in argv if a not in ("-m", "--multirun"))
            return f"{arg} between overrides: put it at the end (or the start) of the command line: {overrides} -m"
    return None


def _dirname_problem(argv: Sequence[str]) -> str | None:
    """Job dirs are named by the overrides (plus their hash): keys left out of the name would give two jobs
    one dir, and the second was refused as another configuration's."""
    for arg in argv:
        if re.fullmatch(r"[+~]*hydra\.job\.config\.override_dirname\.exclude_keys(=.*)?", arg):
            return (f"{arg}: evalrun names each sweep job's dir by all of its overrides, so that two jobs never share "
                    f"one; leave override_dirname.exclude_keys unset (hydra.sweep.subdir= names dirs your way)")
    return None


def _chdir_problem(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if re.fullmatch(r"\+*hydra\.job\.chdir=(['\"]?)(?i:true|yes|on|1)\1", arg):  # quoted too: Hydra reads 'true' as true
            return (f"{arg}: evalrun writes each job's files into its job dir itself and reads relative paths "
                    f"(prompts.path, model.path, reference.path) from where you launch it; leave hydra.job.chdir false")
    return None
