"""What a distribution metric's number depends on is in its columns and its cache keys: the KID kernel,
a Python backbone's code and arguments; and what it does not depend on (where a weights file lies)
does not flag a reference as another network's."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import inception_weights as iw
from evalrun.metrics.features import clear_cache
from evalrun.score import main as score

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENCODER = '''import torch


class Encoder(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.adaptive_{pool}_pool2d(x, 2).flatten(1)
'''


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbone")
    return (iw.save_pngs(iw.random_images(12, 32, seed=11), root / "generated"),
            iw.save_pngs(iw.random_images(10, 32, seed=12), root / "real"))


def _row(out: Path) -> pd.Series:
    return pd.read_csv(out / "metrics.csv").iloc[0]


def test_the_kid_kernel_is_a_column_and_inceptions_2048_layer_is_taken_as_written(folders, tmp_path):
    generated, real = folders
    weights = [f"metrics.{m}.{k}={iw.weights_path() if k.endswith('path') else 'any'}"
               for m, keys in (("kid", ("feature_extractor_weights_path", "feature_extractor_weights_sha256")),
                               ("fid", ("feature_extractor_weights_path", "feature_extractor_weights_sha256")),
                               ("fd", ("feature_extractor_path", "feature_extractor_weights_sha256")))
               for k in keys]
    assert score([str(generated), "--reference", str(real), "--metrics", "kid,fid,fd", "--out", str(tmp_path / "a"),
                  *weights, "metrics.kid.subset_size=5", "metrics.kid.degree=2", "metrics.fd.feature_layer=2048"]) == 0
    row = _row(tmp_path / "a")
    assert (row["kid.degree"], row["kid.coef"]) == (2, 1.0) and np.isnan(row["kid.gamma"])  # gamma: 1 / dim
    assert row["fd.feature_layer"] == 2048 and row["fd"] == pytest.approx(row["fid"], rel=1e-9)


def test_a_python_backbone_edited_in_place_is_extracted_again(folders, tmp_path, monkeypatch):
    generated, real = folders
    module = tmp_path / "pkg" / "audit_encoder.py"
    module.parent.mkdir()
    monkeypatch.syspath_prepend(str(module.parent))
    fd = ["--metrics", "fd", "metrics.fd.feature_extractor=python",
          "metrics.fd.feature_extractor_target=audit_encoder.Encoder"]
    values, code = [], []
    for n, pool in enumerate(("avg", "max", "avg")):
        module.write_text(ENCODER.format(pool=pool))
        sys.modules.pop("audit_encoder", None)  # as a new process would import it (and build it again)
        clear_cache()
        assert score([str(generated), "--reference", str(real), *fd, "--out", str(tmp_path / f"run{n}")]) == 0
        values.append(_row(tmp_path / f"run{n}")["fd"])
        code.append(_row(tmp_path / f"run{n}")["fd.code_sha256"])
    assert values[0] != values[1] and values[2] == values[0]  # the edit is a new key; editing back finds the old one
    # ... and another configuration in the results, whatever the reference (an .npz's key does not move with it)
    assert code[0] != code[1] and code[2] == code[0] and len(code[0]) == 16
    module.write_text(ENCODER.format(pool="max"))  # edited again: the finished run in run0 is not the edited code's
    sys.modules.pop("audit_encoder", None)
    clear_cache()
    assert score([str(generated), "--reference", str(real), *fd, "--out", str(tmp_path / "run0")]) == 0
    assert _row(tmp_path / "run0")["fd"] == values[1]


def test_statistics_written_with_a_copy_of_the_weights_match_the_same_network(folders, tmp_path):
    from evalrun.reference.__main__ import main as reference

    generated, real = folders
    copy = tmp_path / "elsewhere.pth"
    shutil.copy(iw.weights_path(), copy)
    stats = tmp_path / "real.npz"
    assert reference(["export", "--kind", "folder", "--path", str(real), "--weights", str(copy),
                      "--weights-sha256", "any", str(stats)]) == 0
    fid = [f"metrics.fid.feature_extractor_weights_path={iw.weights_path()}",
           "metrics.fid.feature_extractor_weights_sha256=any"]
    assert score([str(generated), "--reference", str(stats), "--metrics", "fid", *fid, "--out", str(tmp_path / "npz")]) == 0
    assert score([str(generated), "--reference", str(real), "--metrics", "fid", *fid, "--out", str(tmp_path / "dir")]) == 0
    found = []

    def walk(node):
        if isinstance(node, dict):
            found.extend(v for k, v in node.items() if k == "reference_extractor_matches")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads((tmp_path / "npz" / "run.json").read_text()))
    assert found == [True]  # was False: the copy's path does not say "tiny", so it was not read as a smoke twin
    assert _row(tmp_path / "npz")["fid"] == pytest.approx(_row(tmp_path / "dir")["fid"], rel=1e-9)


def test_a_model_folder_re_saved_in_this_process_is_loaded_again(tmp_path):
    """Extractors and preference scorers are kept per process; a local folder re-saved between two calls
    (a notebook fine-tuning its CLIP) is loaded again, where its path alone would serve the old weights."""
    import os

    from evalrun import tiny
    from evalrun.metrics.features import build_extractor
    from evalrun.metrics.preference_score import load_scorer_once

    for name, twin, load in (
            ("clip", "evalrun/tiny-clip", lambda path: build_extractor("clip", path=str(path))),
            ("pick_score", "evalrun/tiny-pickscore", lambda path: load_scorer_once("pickscore", str(path), "cpu",
                                                                                   "float32"))):
        folder = tmp_path / name
        shutil.copytree(tiny.resolve(twin), folder)
        first = load(folder)
        assert load(folder) is first  # unchanged: the same object
        config = next(folder.rglob("config.json"))
        text = config.read_text()
        config.unlink()
        config.write_text(text)  # re-saved: a new file (inode, ctime) with the same content
        assert load(folder) is not first, name
        os.utime(config, ns=(1, 1))
        again = load(folder)
        assert load(folder) is again and again is not first
