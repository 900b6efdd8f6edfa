"""A config file that is not valid YAML is one line naming the file and line (evalrun/yaml_loader.py), and
the loader that says so is OmegaConf's own otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf, _utils

from evalrun import yaml_loader

BROKEN = "steps: [1, 2\nseed: 3\n"
BROKEN_MESSAGE = "not valid YAML (while parsing a flow sequence; expected ',' or ']', but got ':'); fix the file"


def test_a_syntax_error_is_one_line_naming_the_file_and_line(tmp_path):
    from hydra.errors import CompactHydraException

    from evalrun.errors import ConfigError

    path = tmp_path / "bad.yaml"
    path.write_text(BROKEN)
    with yaml_loader.readable_yaml_errors(), pytest.raises(yaml.YAMLError) as raised:
        OmegaConf.load(path)
    assert str(raised.value) == f"{path}, line 2, column 5: {BROKEN_MESSAGE}"
    # Hydra prints a compact exception's message alone; the API passes a ConfigError on as it is.
    assert isinstance(raised.value, CompactHydraException) and isinstance(raised.value, ConfigError)


@pytest.mark.parametrize("text, message", [
    ("a: 1\nb: 2\na: 3\n", "line 3, column 1: not valid YAML (while constructing a mapping; found duplicate key a)"),
    ("a: 1\nb: \x07\n", "position 8: not valid YAML (special characters are not allowed: #x0007)"),
    ("steps:\t3\n", "line 1, column 7: not valid YAML (while scanning for the next token; found character '\\t' that "
                    "cannot start any token)"),
])
def test_other_refusals_are_one_line_too_and_omegaconf_refuses_the_same(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(yaml.YAMLError):  # OmegaConf's own loader refuses each: the same parser decides
        OmegaConf.load(path)
    with yaml_loader.readable_yaml_errors(), pytest.raises(yaml.YAMLError) as raised:
        OmegaConf.load(path)
    assert str(raised.value) == f"{path}, {message}; fix the file"


def test_valid_files_load_as_omegaconf_loads_them(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("x: 1e-4\ny: [a, 2]\nwhen: 2001-12-14\nquoted: \"\\ud83d\\ude00\"\n")
    plain = OmegaConf.to_container(OmegaConf.load(path))
    with yaml_loader.readable_yaml_errors():
        assert OmegaConf.to_container(OmegaConf.load(path)) == plain
    assert plain["x"] == 1e-4 and plain["when"] == "2001-12-14"


def test_the_block_swaps_omegaconfs_loader_and_puts_it_back():
    original = _utils.get_yaml_loader
    with yaml_loader.readable_yaml_errors():
        with yaml_loader.readable_yaml_errors():  # nested: the inner exit keeps it
            pass
        assert _utils.get_yaml_loader() is yaml_loader.loader_with_messages()
    assert _utils.get_yaml_loader is original
    with pytest.raises(RuntimeError), yaml_loader.readable_yaml_errors():
        raise RuntimeError("an error inside the block")
    assert _utils.get_yaml_loader is original


def test_threads_share_the_block():
    original, inside, seen = _utils.get_yaml_loader, threading.Barrier(2, timeout=10), []

    def work():
        with yaml_loader.readable_yaml_errors():
            inside.wait()  # both inside at once
            seen.append(_utils.get_yaml_loader())
            inside.wait()  # the first to leave does not restore it under the other

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [yaml_loader.loader_with_messages()] * 2
    assert _utils.get_yaml_loader is original


def test_a_broken_experiment_file_on_the_searchpath_is_one_line_from_the_cli(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "broken.yaml").write_text("# @package _global_\n" + BROKEN)
    done = subprocess.run([sys.executable, "-m", "evalrun", f"hydra.searchpath=[file://{tmp_path}]",
                           "experiment=broken", "--cfg", "job"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[0] == f"{tmp_path / 'experiment' / 'broken.yaml'}, line 3, column 5: {BROKEN_MESSAGE}", done.stderr
    assert lines[1:] == ["Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace."]  # Hydra's own
