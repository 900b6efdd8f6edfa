"""Hydra's config files parsed by libyaml (evalrun/yaml_loader.py) load to exactly what OmegaConf's own loader gives."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf, _utils

import hydra
from evalrun import yaml_loader
from evalrun.paths import CONF_DIR

pytestmark = pytest.mark.skipif(yaml_loader.libyaml_loader() is None, reason="PyYAML built without libyaml")

TRICKY = """
exp: 1e3
underscored: 1_000
leading_dot: .5
signed: -2.5e-3
sexagesimal: 1:30.5
infinity: .inf
not_a_number: .nan
hex: 0x10
octal: 0o17
yes_word: yes
on_word: on
true_word: true
tilde: ~
null_word: null
date: 2001-12-14
stamp: 2001-12-14t21:59:43.10-05:00
quoted: "1e3"
empty:
list: [1, 2.0, "3", a b]
nested: {a: {b: [x, {c: 1.5e+2}]}}
interpolation: ${model.path}
multiline: |
  two
  lines
folded: >
  one
  line
unicode: "h\\u00e9 \\u2192 \u00e9"
anchor: &a {k: 1}
alias: *a
"""


def typed(value):
    """A value with every type spelt out: 1 == 1.0 == True in Python, not in a config."""
    if isinstance(value, dict):
        return {typed(k): typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, float) and value != value:
        return ("float", "nan")
    return (type(value).__name__, value)


def both(text: str):
    return (yaml.load(text, Loader=_utils.get_yaml_loader()),
            yaml.load(text, Loader=yaml_loader.libyaml_loader()))


def config_files() -> list[Path]:
    hydra_conf = Path(hydra.__file__).parent / "conf"
    return sorted(CONF_DIR.rglob("*.yaml")) + sorted(hydra_conf.rglob("*.yaml"))


def test_every_packaged_and_hydra_config_file_loads_to_the_same_values():
    files = config_files()
    assert len(files) > 100  # evalrun's conf/ and Hydra's own
    for path in files:
        ours, theirs = both(path.read_text(encoding="utf-8"))
        assert typed(theirs) == typed(ours), path


def test_tricky_scalars_keep_omegaconfs_types():
    ours, theirs = both(TRICKY)
    assert typed(theirs) == typed(ours)
    assert ours["exp"] == 1000.0 and isinstance(ours["exp"], float)  # OmegaConf's float resolver, not YAML 1.1's
    assert ours["date"] == "2001-12-14"  # OmegaConf drops the timestamp resolver: dates stay strings


def test_a_duplicate_key_is_refused_as_by_omegaconf():
    text = "a: 1\nb: 2\na: 3\n"
    with pytest.raises(yaml.constructor.ConstructorError, match="found duplicate key a"):
        yaml.load(text, Loader=_utils.get_yaml_loader())
    with pytest.raises(yaml.YAMLError, match=r"line 3, column 1: not valid YAML \(while constructing a mapping; "
                                             r"found duplicate key a\); fix the file$"):
        yaml.load(text, Loader=yaml_loader.libyaml_loader())


def test_a_syntax_error_is_one_line_naming_the_file_and_line(tmp_path):
    from hydra.errors import CompactHydraException

    from evalrun.errors import ConfigError

    path = tmp_path / "bad.yaml"
    path.write_text("steps: [1, 2\nseed: 3\n")
    with yaml_loader.libyaml_configs(), pytest.raises(yaml.YAMLError) as raised:
        OmegaConf.load(path)
    assert str(raised.value) == (f"{path}, line 2, column 5: not valid YAML (while parsing a flow sequence; did not "
                                 f"find expected ',' or ']'); fix the file")
    # Hydra prints a compact exception's message alone; the API passes a ConfigError on as it is.
    assert isinstance(raised.value, CompactHydraException) and isinstance(raised.value, ConfigError)


def test_a_broken_experiment_file_on_the_searchpath_is_one_line_from_the_cli(tmp_path):
    import subprocess
    import sys

    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "broken.yaml").write_text("# @package _global_\nsteps: [1, 2\nseed: 3\n")
    done = subprocess.run([sys.executable, "-m", "evalrun", f"hydra.searchpath=[file://{tmp_path}]",
                           "experiment=broken", "--cfg", "job"], capture_output=True, text=True, cwd=tmp_path,
                          env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[0] == (f"{tmp_path / 'experiment' / 'broken.yaml'}, line 3, column 5: not valid YAML (while parsing "
                        f"a flow sequence; did not find expected ',' or ']'); fix the file"), done.stderr
    assert lines[1:] == ["Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace."]  # Hydra's own


def test_the_block_swaps_omegaconfs_loader_and_puts_it_back(tmp_path):
    original = _utils.get_yaml_loader
    path = tmp_path / "c.yaml"
    path.write_text("x: 1e-4\ny: [a, 2]\n")
    with yaml_loader.libyaml_configs():
        with yaml_loader.libyaml_configs():  # nested: the inner exit keeps it
            pass
        assert _utils.get_yaml_loader() is yaml_loader.libyaml_loader()
        loaded = OmegaConf.load(path)
    assert _utils.get_yaml_loader is original
    assert OmegaConf.to_container(loaded) == OmegaConf.to_container(OmegaConf.load(path)) == {"x": 1e-4, "y": ["a", 2]}


def test_threads_share_the_block():
    original, inside = _utils.get_yaml_loader, threading.Barrier(2)

    def work():
        with yaml_loader.libyaml_configs():
            inside.wait()  # both inside at once
            assert _utils.get_yaml_loader() is yaml_loader.libyaml_loader()
            inside.wait()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _utils.get_yaml_loader is original


def test_a_composition_is_the_same_with_either_parser(monkeypatch):
    from evalrun.composition import compose

    overrides = ["experiment=scheduler_comparison", "prompts=parti", "metrics=[clip_score,fid]"]
    fast = OmegaConf.to_yaml(compose(overrides, hydra=True))
    monkeypatch.setattr(yaml_loader, "libyaml_loader", lambda: None)  # OmegaConf's own parser throughout
    assert OmegaConf.to_yaml(compose(overrides, hydra=True)) == fast
