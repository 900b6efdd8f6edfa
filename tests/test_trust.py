"""Trust: no code runs from a weights file, nothing finished is lost or silently reused, every bad input
gets one clear line. Each test reproduces a failure evalrun 0.1 had (issue "Trust")."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

import inception_weights as iw  # noqa: E402
from conftest import REPO, cli, error_of, run_inprocess  # noqa: E402


class Payload:
    """Unpickling this creates a marker file: what a malicious checkpoint would do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def write_evil(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"weight": Payload(marker)}))


# ----------------------------------------------------------------------------- security
def test_an_inception_weights_file_cannot_run_code(tmp_path):
    evil, marker = tmp_path / "EVIL.pth", tmp_path / "pwned"
    write_evil(evil, marker)
    base = ["model=tiny_ddpm", "num_images=2", "metrics=[inception_score]", "metrics.inception_score.splits=1",
            f"metrics.inception_score.feature_extractor_weights_path={evil}"]
    assert "is not the official weights-inception-2015-12-05-6726825d.pth" in error_of(*base, run_dir=tmp_path / "a")
    message = error_of(*base, "metrics.inception_score.feature_extractor_weights_sha256=any", run_dir=tmp_path / "b")
    assert "not a weights file that loads safely" in message and str(evil) in message
    assert not marker.exists()  # the payload never ran
    (tmp_path / "garbage.pth").write_bytes(b"\x00garbage" * 100)
    message = error_of(*base[:4], f"metrics.inception_score.feature_extractor_weights_path={tmp_path / 'garbage.pth'}",
                       "metrics.inception_score.feature_extractor_weights_sha256=any", run_dir=tmp_path / "c")
    assert "not a weights file" in message and "garbage.pth" in message


def test_a_checkpoints_tokenizer_entries_cannot_run_code(tmp_path):
    """Counting truncated prompts loads a checkpoint's tokenizers before the pipeline: a module that
    model_index.json names is never imported, and a tokenizer config's auto_map (code shipped in the
    folder) is refused, never run (it asked on a terminal, and ran)."""
    from evalrun import tiny
    from evalrun.truncation import _tokenizers

    source = tmp_path / "ckpt"
    shutil.copytree(tiny.resolve("evalrun/tiny-sd"), source)
    index = json.loads((source / "model_index.json").read_text())
    marker = tmp_path / "ran"
    (source / "evalrun_audit_module.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    sys.path.insert(0, str(source))
    try:
        (source / "model_index.json").write_text(json.dumps({**index, "tokenizer": ["evalrun_audit_module", "CLIPTokenizer"]}))
        with pytest.raises(ValueError, match="names evalrun_audit_module.CLIPTokenizer for tokenizer, not a transformers"):
            _tokenizers.__wrapped__(str(source), None)
        assert "evalrun_audit_module" not in sys.modules and not marker.exists()
        config = source / "tokenizer" / "tokenizer_config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()),
                                      "auto_map": {"AutoTokenizer": ["evalrun_audit_module.Tok", None]}}))
        (source / "model_index.json").write_text(json.dumps({**index, "tokenizer": ["transformers", "AutoTokenizer"]}))
        with pytest.raises(ValueError):
            _tokenizers.__wrapped__(str(source), None)
        assert not marker.exists()
    finally:
        sys.path.remove(str(source))


def test_a_pipeline_component_pickle_cannot_run_code(tmp_path):
    from evalrun import tiny

    local, marker = tmp_path / "checkpoint", tmp_path / "pwned"
    shutil.copytree(tiny.resolve("evalrun/tiny-sd"), local)
    (local / tiny.MARKER).unlink()
    (local / "unet" / "diffusion_pytorch_model.safetensors").unlink()  # only the .bin fallback is left...
    write_evil(local / "unet" / "diffusion_pytorch_model.bin", marker)  # ... and it carries a payload
    message = error_of(f"model.path={local}", "prompts.limit=1", "metrics=[]", run_dir=tmp_path / "run")
    assert "model.path" in message and not marker.exists()
    assert "is a pickle that would run code when loaded (weights_only=True refused it)" in message  # said why


def test_results_and_caches_respect_the_umask(tmp_path, monkeypatch):
    old = os.umask(0o022)
    try:
        monkeypatch.setenv("EVALRUN_CACHE", str(tmp_path / "cache"))
        run_inprocess("prompts.limit=1", run_dir=tmp_path / "run")
    finally:
        os.umask(old)
    files = [tmp_path / "run" / n for n in ("run.json", "metrics.csv", "per_image.csv")] + \
        list((tmp_path / "run" / "images").glob("*.png"))
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    tiny_dir = next((tmp_path / "cache").glob("evalrun--tiny-sd"))
    assert stat.S_IMODE(tiny_dir.stat().st_mode) == 0o755


# ----------------------------------------------------------------------------- nothing lost, nothing stale
def test_overrides_that_differ_only_in_replaced_characters_get_their_own_dirs(tmp_path):
    from evalrun.jobdirs import job_dirname

    a, b = job_dirname("prompts.path=/p/a.txt"), job_dirname("prompts.path=/p_a.txt")
    assert a != b and "/" not in a + b
    long = job_dirname("model.path=/work/" + "x" * 200 + "/ass,scheduler=ddim", varying={"scheduler"})
    assert long.startswith("scheduler=ddim") and len(long) <= 130  # the varying key stays readable
    chinese = [job_dirname(f"prompts.negative_prompt={'模糊' * 60}{end}", varying={"prompts.negative_prompt"})
               for end in "AB"]  # three bytes a character: 240 characters were 700 bytes, over the 255 a name takes
    assert chinese[0] != chinese[1] and all(len(n.encode("utf-8")) <= 130 for n in chinese)
    (tmp_path / chinese[0]).mkdir()


def test_a_run_refused_before_its_first_image_leaves_its_directory_to_the_fix(tmp_path):
    """A check that refuses a run after it claimed its directory (too few images for a metric) leaves no
    results there: the corrected configuration the error asks for runs in the same directory."""
    common = ["model=tiny_ddpm", "steps=2", "metrics=[inception_score]", "paths.image_store=none"]
    assert "needs at least 10 images but this run makes 8" in error_of(*common, "num_images=8", run_dir=tmp_path)
    record = run_inprocess(*common, "num_images=10", run_dir=tmp_path)
    assert record["provenance"]["images"]["sampled"] == 10 and (tmp_path / "run.json").exists()


def test_part_of_a_sweep_run_again_goes_back_to_its_job_dirs(tmp_path):
    """A second sweep into the same directory that varies fewer keys names its jobs in another key order;
    each job still finds its earlier directory (by its hash), so nothing is computed or counted twice."""
    import evalrun

    common = ["device=cpu", "prompts.limit=1", "metrics=[]", "paths.image_store=none"]  # device sorts first
    evalrun.sweep(["guidance_scale=3,5", *common], sweep_dir=tmp_path)
    first = sorted(p.parent.name for p in tmp_path.glob("*/run.json"))
    again = evalrun.sweep(["guidance_scale=5", *common], sweep_dir=tmp_path)
    assert sorted(p.parent.name for p in tmp_path.glob("*/run.json")) == first and len(first) == 2
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2  # no third job dir
    assert again.summary["nfe_n"].tolist() == [1, 1]


def test_a_directory_of_another_configuration_is_never_overwritten(tmp_path):
    run_inprocess("prompts.limit=1", run_dir=tmp_path / "run")
    message = error_of("prompts.limit=2", run_dir=tmp_path / "run")
    assert "holds the results of another configuration" in message
    assert pd.read_csv(tmp_path / "run" / "images.csv").shape[0] == 1  # untouched
    refused = cli("prompts.limit=2", f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert refused.returncode == 2 and "holds the results of another configuration" in refused.stderr
    assert not (tmp_path / "run" / "failed.json").exists()  # not even its failure is written there


def test_a_sweep_whose_job_dir_holds_another_configuration_exits_non_zero(tmp_path):
    """A sweep job refused because its directory holds another configuration's results (an experiment file
    edited, then the sweep run again) writes nothing there, so failed_runs.csv cannot list it: the sweep
    exited 0, summarising the old configuration's runs as if the new one had run."""
    import json

    sweep = tmp_path / "sweep"
    args = ("prompts.limit=1", "steps=2", "metrics=[]", "seed=0,1", f"hydra.sweep.dir={sweep}", "-m")
    assert cli(*args).returncode == 0
    (record_file,) = sweep.glob("*seed=1*/run.json")
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**record, "config_key": "another configuration's"}))
    refused = cli(*args, check=False)
    assert refused.returncode == 1 and "holds the results of another configuration" in refused.stderr
    assert "1 job(s) of this sweep failed" in refused.stderr and not (record_file.parent / "failed.json").exists()
    record_file.write_text(json.dumps(record))
    assert cli(*args).returncode == 0  # nothing failed this time


def test_weights_changed_in_place_are_not_reused_nor_averaged(tmp_path):
    import torch
    from diffusers import StableDiffusionPipeline

    from evalrun import tiny
    from evalrun.aggregate import summarise
    from evalrun.runs import load_runs

    local = tmp_path / "ckpt"
    pipe = StableDiffusionPipeline.from_pretrained(tiny.resolve("evalrun/tiny-sd"))
    pipe.save_pretrained(local)
    args = [f"model.path={local}", "prompts.limit=1"]
    first = run_inprocess(*args, "seed=0", run_dir=tmp_path / "sweep" / "seed0")
    with torch.no_grad():
        pipe.unet.conv_out.weight.mul_(1.5)  # "fine-tuned" in place
    pipe.save_pretrained(local)
    again = run_inprocess(*args, "seed=0", run_dir=tmp_path / "sweep" / "seed0")
    assert again["run_key"] != first["run_key"] and again["provenance"]["images"]["sampled"] == 1
    run_inprocess(*args, "seed=1", run_dir=tmp_path / "sweep" / "seed1")
    shutil.copytree(tmp_path / "sweep" / "seed0", tmp_path / "old")  # keep the new seed-0 run ...
    runs = load_runs([tmp_path / "sweep"])
    assert runs["model_weights_sha256"].nunique() == 1
    # ... and an old run with the previous weights joins the sweep: it is its own group, not averaged in.
    old_dir = tmp_path / "sweep" / "seed1_old"
    shutil.copytree(tmp_path / "sweep" / "seed1", old_dir)
    row = pd.read_csv(old_dir / "metrics.csv")
    row["model_weights_sha256"] = "0" * 16
    row.to_csv(old_dir / "metrics.csv", index=False)
    summary = summarise(load_runs([tmp_path / "sweep"]))
    assert len(summary) == 2 and sorted(summary["clip_score_n"]) == [1, 2]


def test_a_model_folders_fingerprint_is_the_sha256_of_each_file_it_loads(tmp_path):
    """Checked against hashlib file by file: weights and configs, through a symlinked file (a hub
    snapshot) and a symlinked folder; hidden files and folders and broken links are not the model."""
    import hashlib

    from evalrun.hashing import tree_fingerprint

    model, blobs = tmp_path / "model", tmp_path / "blobs"
    (model / "unet").mkdir(parents=True)
    (blobs / "vae").mkdir(parents=True)
    (model / "model_index.json").write_text('{"a": 1}')
    (model / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"weights" * 100)
    (blobs / "text.bin").write_bytes(b"encoder")
    (model / "text.bin").symlink_to(blobs / "text.bin")
    (blobs / "vae" / "config.json").write_text("{}")
    (model / "vae").symlink_to(blobs / "vae")
    (model / ".cache").mkdir()
    (model / ".cache" / "x.json").write_text("{}")
    (model / ".complete.json").write_text("{}")
    (model / "gone.json").symlink_to(tmp_path / "missing.json")
    (model / "notes.md").write_text("not loaded")
    (model / "tokenizer").mkdir()  # a chat template wraps every prompt (Z-Image, Qwen-Image): it is loaded
    (model / "tokenizer" / "chat_template.jinja").write_text("{{ message['content'] }}")
    expected = {rel: hashlib.sha256((model / rel).read_bytes()).hexdigest()
                for rel in ("model_index.json", "unet/diffusion_pytorch_model.safetensors", "text.bin", "vae/config.json",
                            "tokenizer/chat_template.jinja")}
    assert tree_fingerprint(model) == expected
    (model / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"changed in place")
    assert tree_fingerprint(model)["unet/diffusion_pytorch_model.safetensors"] == \
        hashlib.sha256(b"changed in place").hexdigest()


@pytest.mark.parametrize("damage", ["truncated", "zero_bytes", "bit_flip", "wrong_size", "other_content"])
def test_damaged_images_are_regenerated_on_resume(tmp_path, damage, caplog):
    args = ["prompts.limit=2", "paths.image_store=none"]  # no store: only the run's own files can be reused
    first = run_inprocess(*args, run_dir=tmp_path / "run")
    (tmp_path / "run" / "run.json").unlink()  # an interrupted run...
    victim = tmp_path / "run" / "images" / "00001_00.png"
    data = victim.read_bytes()
    if damage == "truncated":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "zero_bytes":
        victim.write_bytes(b"")
    elif damage == "bit_flip":
        victim.write_bytes(data[:60] + bytes([data[60] ^ 0xFF]) + data[61:])
    elif damage == "wrong_size":
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(victim)
    else:  # a valid PNG of the right size but other pixels
        Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(victim)
    with caplog.at_level(logging.WARNING):
        record = run_inprocess(*args, run_dir=tmp_path / "run")
    assert "00001_00.png" in caplog.text and "regenerating" in caplog.text
    assert record["provenance"]["images"] == {"sampled": 1, "reused": 1, "repaired": 1}
    assert record["values"]["clip_score"] == first["values"]["clip_score"]  # the same pixels again
    assert record["values"]["nfe"] == first["values"]["nfe"]


def test_leftovers_of_a_kill_are_cleaned(tmp_path):
    import time

    from evalrun.paths import cache_dir

    run_dir = tmp_path / "run"
    (run_dir / "images").mkdir(parents=True)
    (run_dir / "metrics.csv.abc.tmp").write_text("half")
    (run_dir / "images" / "00000_00.png.xyz.tmp").write_text("half")
    stale = cache_dir() / "evalrun--tiny-sd.partial.dead"
    stale.mkdir(parents=True, exist_ok=True)
    old = time.time() - 7200
    os.utime(stale, (old, old))
    run_inprocess("prompts.limit=1", run_dir=run_dir)
    assert not list(run_dir.rglob("*.tmp")) and not stale.exists()


def test_two_sweeps_writing_one_run_compute_it_once(tmp_path):
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    cmd = [sys.executable, "-m", "evalrun", "prompts.limit=2", "paths.image_store=none", f"hydra.run.dir={tmp_path / 'run'}"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert sum("already complete" in out for out in outputs) == 1  # the second waited, then reused
    manifest = (tmp_path / "run" / "images" / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 2  # each image written once


# ----------------------------------------------------------------------------- one clear line per bad input
def test_bad_prompt_files_name_the_file_row_and_key(tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    message = error_of("prompts=file", f"prompts.path={latin}", run_dir=tmp_path / "a")
    assert "is not valid utf-8" in message and "prompts.encoding=" in message and "latin.txt" in message
    run_inprocess("prompts=file", f"prompts.path={latin}", "prompts.encoding=latin-1", run_dir=tmp_path / "ok")
    assert pd.read_csv(tmp_path / "ok" / "per_image.csv")["prompt"].tolist() == ["café au lait"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n{"prompt": "b"\n')
    assert "line 2 is not valid JSON" in error_of("prompts=file", f"prompts.path={bad}", run_dir=tmp_path / "b")
    assert "prompts=file needs prompts.path=FILE" in error_of("prompts=file", run_dir=tmp_path / "c")
    assert "prompts.shuffle_seed must be a non-negative integer" in error_of("prompts.shuffle_seed=-1", run_dir=tmp_path / "d")
    assert "is a directory" in error_of("prompts=file", f"prompts.path={tmp_path}", run_dir=tmp_path / "e")
    cells = tmp_path / "cells.csv"  # an empty cell (a blank line in a one-column file) and a blank one
    pd.DataFrame({"prompt": ["a cat", None, " ", "a dog"]}).to_csv(cells, index=False)
    message = error_of("prompts=file", f"prompts.path={cells}", run_dir=tmp_path / "f")
    assert "2 empty prompt(s)" in message and "data rows 1, 2" in message


def test_prompt_column_works_for_every_file_based_prompt_set(tmp_path):
    table = tmp_path / "parti.tsv"
    pd.DataFrame({"text": ["a red cube", "a blue sphere"], "Category": ["A", "B"]}).to_csv(table, sep="\t", index=False)
    message = error_of("prompts=parti", f"prompts.path={table}", run_dir=tmp_path / "a")
    assert "no 'Prompt' column" in message and "set prompts.prompt_column" in message
    run_inprocess("prompts=parti", f"prompts.path={table}", "prompts.prompt_column=text", run_dir=tmp_path / "ok")
    assert pd.read_csv(tmp_path / "ok" / "per_image.csv")["prompt"].tolist() == ["a red cube", "a blue sphere"]


def test_an_unreadable_reference_image_is_skipped_and_counted_or_refused(tmp_path):
    ref = iw.save_pngs(iw.random_images(6, 32, seed=3), tmp_path / "ref")
    good = (ref / "0000.png").read_bytes()
    (ref / "0001.png").write_bytes(good[: len(good) // 3])  # truncated download
    args = ["model=tiny_ddpm", "num_images=4", "steps=2", "metrics=[fid]", "reference=folder", f"reference.path={ref}"]
    record = run_inprocess(*args, run_dir=tmp_path / "run")
    info = record["provenance"]["metrics"]["fid"]
    assert info["reference_skipped"] == 1 and info["reference_n"] == 5 and info["reference_skipped_files"][0].endswith("0001.png")
    assert info["reference_feature_batch_size"] == 50  # the cache entry's own, beside the run's feature batch size
    message = error_of(*args, "reference.strict=true", "paths.cache_dir=" + str(tmp_path / "fresh-cache"),
                       run_dir=tmp_path / "strict")
    assert "0001.png cannot be read" in message and "reference.strict=false" in message


def test_local_folders_that_are_not_models_say_what_is_missing(tmp_path):
    (tmp_path / "notamodel").mkdir()
    message = error_of(f"model.path={tmp_path / 'notamodel'}", run_dir=tmp_path / "a")
    assert "has no model_index.json" in message and "not the offline" not in message and "hf download" not in message
    message = error_of(f"metrics.clip_score.clip_model={tmp_path / 'notamodel'}", "prompts.limit=1", run_dir=tmp_path / "b")
    assert "has no config.json" in message and "hf download" not in message
    from evalrun import tiny

    message = error_of(f"model.path={tiny.resolve('evalrun/tiny-sd')}", "model.revision=main", run_dir=tmp_path / "c")
    assert "model.revision='main' applies to hub ids" in message


def test_too_few_images_for_a_set_metric_is_answered_before_anything_loads(tmp_path, monkeypatch):
    import evalrun.pipelines as pipelines

    monkeypatch.setattr(pipelines, "load_pipeline", lambda *a, **k: pytest.fail("the pipeline was loaded"))
    ref = iw.save_pngs(iw.random_images(2, 16, seed=1), tmp_path / "ref")
    message = error_of("prompts.limit=1", "metrics=[fid]", "reference=folder", f"reference.path={ref}",
                       run_dir=tmp_path / "run")
    assert "metric 'fid' needs at least 2 images but this run makes 1" in message


# ----------------------------------------------------------------------------- numbers that say what they are
def test_results_record_what_was_applied_and_where_it_ran(tmp_path):
    ref = iw.save_pngs(iw.random_images(6, 32, seed=5), tmp_path / "ref")
    record = run_inprocess("model=tiny_ddpm", "num_images=5", "steps=2", "metrics=[kid]", "reference=folder",
                           f"reference.path={ref}", run_dir=tmp_path / "run")
    row = pd.read_csv(tmp_path / "run" / "metrics.csv").iloc[0]
    assert row["kid.subset_size"] == 5 and row["kid.subset_size_requested"] == 1000  # applied, requested beside it
    prov = record["provenance"]
    assert prov["versions"]["torchvision"] and prov["versions"]["evalrun"]
    assert prov["environment"]["device"] == "cpu" and "torch_threads" in prov["environment"]
    assert prov["environment"]["evalrun_git"] is None or len(prov["environment"]["evalrun_git"]) >= 40
    assert record["seed_columns"] == ["kid.seed"] and record["columns"]["kid_std"]["kind"] == "spread"
    # Set explicitly, the subset seed no longer follows the run's seed: a configuration of its own, never
    # averaged with kid.seed=8 as two seeds (same images and features: only KID is computed again).
    fixed = run_inprocess("model=tiny_ddpm", "num_images=5", "steps=2", "metrics=[kid]", "reference=folder",
                          f"reference.path={ref}", "metrics.kid.seed=7", run_dir=tmp_path / "fixed")
    assert fixed["seed_columns"] == [] and pd.read_csv(tmp_path / "fixed" / "metrics.csv")["kid.seed"].iloc[0] == 7


def test_an_npz_without_provenance_warns_that_it_cannot_be_checked(tmp_path, caplog):
    from evalrun.metrics.features import build_extractor

    feats = build_extractor("inception", path="evalrun/tiny-inception").extract(iw.random_images(8, 32, seed=6))["2048"]
    np.savez(tmp_path / "foreign.npz", mu=feats.mean(0).astype(np.float64), sigma=np.cov(feats, rowvar=False))
    with caplog.at_level(logging.WARNING):
        record = run_inprocess("model=tiny_ddpm", "num_images=3", "steps=2", "metrics=[fid]", "reference=npz",
                               f"reference.path={tmp_path / 'foreign.npz'}", run_dir=tmp_path / "run")
    assert "has only mu and sigma" in caplog.text
    assert "sample count and feature extractor cannot be checked" in record["provenance"]["metrics"]["fid"]["reference_warning"]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["values"]["fid"] >= 0
    # evalrun's own provenance that names no extractor: unchecked too, not "a different extractor"
    from evalrun.metrics.functional.fid import GaussianStats
    from evalrun.reference.npz import save_npz

    save_npz(tmp_path / "noted.npz", GaussianStats.from_features(feats), {"note": "made by hand"})
    with pytest.warns() as caught:
        record = run_inprocess("model=tiny_ddpm", "num_images=3", "steps=2", "metrics=[fid]", "reference=npz",
                               f"reference.path={tmp_path / 'noted.npz'}", run_dir=tmp_path / "run2")
    fid_info = record["provenance"]["metrics"]["fid"]
    assert "records no feature extractor" in fid_info["reference_warning"] and "fid_warning_reference" not in fid_info
    assert not any("different feature extractor" in str(w.message) for w in caught)


def test_the_cache_command_lists_and_prunes(tmp_path, capsys):
    from evalrun.cache import main

    cache = tmp_path / "cache"
    run_inprocess("prompts.limit=2", f"paths.cache_dir={cache}", run_dir=tmp_path / "run")
    assert main(["--cache-dir", str(cache), "list"]) == 0
    out = capsys.readouterr().out
    assert "images" in out and "       2 entries" in out and "tiny" in out
    assert main(["list", "--cache-dir", str(cache)]) == 0  # after the command too, as users type it
    assert capsys.readouterr().out == out
    assert main(["prune", "--cache-dir", str(cache), "--section", "images", "--older-than", "0", "--dry-run"]) == 0
    assert "would remove 2 entries" in capsys.readouterr().out and len(list((cache / "images").rglob("*.png"))) == 2
    assert main(["--cache-dir", str(cache), "prune", "--section", "images", "--older-than", "0"]) == 0
    assert not list((cache / "images").rglob("*.png"))
    assert len(list((tmp_path / "run" / "images").glob("*.png"))) == 2  # the run's hard links survive
    for bad in ("-5", "nan", "inf", "week"):  # a cutoff in the future (or none) would prune the whole cache
        with pytest.raises(SystemExit) as refused:
            main(["--cache-dir", str(cache), "prune", "--older-than", bad])
        assert refused.value.code == 2 and f"{bad!r} is not a number of days" in capsys.readouterr().err
    assert (cache / "evalrun--tiny-sd").is_dir() and (cache / "features").is_dir()


def test_the_cache_command_sees_a_store_moved_with_paths(tmp_path, capsys):
    """paths.image_store / paths.feature_cache move those sections out of the cache folder: the command lists
    and prunes them where they are when named (it only ever looked under the cache folder)."""
    from evalrun.cache import main

    cache, moved = tmp_path / "cache", tmp_path / "scratch" / "images"
    run_inprocess("prompts.limit=2", f"paths.cache_dir={cache}", f"paths.image_store={moved}", run_dir=tmp_path / "run")
    assert len(list(moved.rglob("*.png"))) == 2 and not (cache / "images").exists()
    (moved / "notes.txt").write_text("mine")  # a folder named by hand: only the store's own files are its entries
    (moved / "ab").mkdir(exist_ok=True)
    (moved / "ab" / "holiday.png").write_bytes(b"mine")
    assert main(["--cache-dir", str(cache), "list", "--image-store", str(moved)]) == 0
    out = capsys.readouterr().out
    images_line = next(line for line in out.splitlines() if line.strip().startswith("images"))
    assert f"images: {moved}" in out and "       2 entries" in images_line
    assert main(["--cache-dir", str(cache), "--image-store", str(moved), "prune", "--section", "images",
                 "--older-than", "0"]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert sorted(p.name for p in moved.rglob("*") if p.is_file()) == ["holiday.png", "notes.txt"]
    with pytest.raises(SystemExit) as refused:
        main(["--cache-dir", str(cache), "list", "--feature-cache", str(tmp_path / "nowhere")])
    assert refused.value.code == 2 and "--feature-cache" in capsys.readouterr().err


def test_a_folder_entry_is_as_recent_as_its_newest_file_and_a_dry_run_changes_nothing(tmp_path, capsys):
    """A reference entry (a folder) that a run read yesterday is in use, whatever its folder's own times; a
    dry run (which lists the folders) predicts the prune exactly; a --cache-dir that is a file is refused."""
    from evalrun.cache import listing, main

    cache, old = tmp_path / "cache", time.time() - 40 * 86400
    for name, read_since in (("used", time.time() - 86400), ("stale", None)):
        entry = cache / "reference" / name
        entry.mkdir(parents=True)
        for file in ("meta.json", "stats.npz"):
            (entry / file).write_text("{}")
            os.utime(entry / file, (old, old))
        if read_since is not None:
            os.utime(entry / "stats.npz", (read_since, old))  # read by a run (atime), written long ago
        os.utime(entry, (old, old))
    oldest = {row[0]: row[3] for row in listing(cache)}["reference"]
    assert oldest < time.time() - 39 * 86400  # the stale entry's, though listing it touched its folder
    for _ in range(2):
        assert main(["--cache-dir", str(cache), "prune", "--section", "reference", "--older-than", "30", "--dry-run"]) == 0
        assert "would remove 1 entries" in capsys.readouterr().out
    assert main(["--cache-dir", str(cache), "prune", "--section", "reference", "--older-than", "30"]) == 0
    assert sorted(p.name for p in (cache / "reference").iterdir()) == ["used"]
    with pytest.raises(SystemExit) as refused:
        main(["--cache-dir", str(cache / "reference" / "used" / "meta.json"), "list"])
    assert refused.value.code == 2 and "is a file, not a cache folder" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["cache_dir", "image_store", "feature_cache", "output_dir"])
def test_a_file_where_a_folder_goes_is_refused_before_anything_runs(tmp_path, key):
    afile = tmp_path / "afile"
    afile.write_text("")
    message = error_of(f"paths.{key}={afile}", "prompts.limit=1", run_dir=tmp_path / "run")
    assert message == f"paths.{key}={afile} is a file, not a folder; point it at a folder (or remove the file)"
    assert not (tmp_path / "run" / "images").exists()
    if key != "output_dir":  # a folder that cannot be made (under a file) failed after sampling, with a traceback
        assert error_of(f"paths.{key}={afile / 'store'}", "prompts.limit=1", run_dir=tmp_path / "run").startswith(
            f"paths.{key}={afile / 'store'} cannot be made (")


def test_an_atomic_write_makes_its_folder_takes_a_free_name_and_leaves_nothing_behind(tmp_path, monkeypatch):
    """The temporary file is created exclusively (a name taken by another writer is skipped, never
    truncated), its folder is made when missing, and a write that fails leaves neither file."""
    from evalrun.results import atomic_write_bytes

    target = tmp_path / "new" / "folder" / "a.png"
    atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    names = iter([b"\x00" * 6, b"\x00" * 6, b"\x01" * 6])
    monkeypatch.setattr(os, "urandom", lambda n: next(names))
    (target.parent / f"a.png.{'00' * 6}.tmp").write_bytes(b"another writer's")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert (target.parent / f"a.png.{'00' * 6}.tmp").read_bytes() == b"another writer's"
    monkeypatch.setattr(os, "urandom", lambda n: b"\x02" * 6)
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"second" and not (target.parent / f"a.png.{'02' * 6}.tmp").exists()


def test_run_csvs_are_what_pandas_would_have_written(tmp_path):
    """images.csv, per_image.csv and metrics.csv are written without pandas: byte for byte what pandas'
    own to_csv gives for the same rows, whatever the cell types (numpy float32 columns keep their
    shortest repr; mixed with gaps or float64 they become float64), and read back the same."""
    import numpy as np
    import pandas as pd

    from evalrun.results import write_rows_csv

    f32 = np.float32
    rows = [
        {"image_id": "00000_00", "prompt": 'a "quoted", comma\nand newline', "prompt_index": 0, "seed": np.int64(3),
         "clip_score": f32(0.1), "fid": 1e-05, "big": 1.2345678901234567e16, "ok": True, "flag": np.bool_(False),
         "nfe": None, "inf": float("inf"), "nan": float("nan"), "kwargs": {"a": [1, 2]}, "x": 0.1 + 0.2,
         "f32_gap": f32(0.1), "f32_mixed": f32(0.7), "text_f32": "a", "int_gap": 1, "bool_gap": True, "mixed_int": 1,
         "f32_nan": f32("nan")},
        {"image_id": "00001_00", "prompt": "", "prompt_index": None, "seed": np.int64(4), "clip_score": f32(-2.5),
         "fid": np.float64(3.0), "big": -0.0, "ok": False, "flag": np.bool_(True), "nfe": 10.0, "inf": -float("inf"),
         "extra": "only here", "f32_mixed": 0.2, "text_f32": f32(0.3), "int_gap": None, "bool_gap": None,
         "mixed_int": np.int32(2), "f32_nan": f32(0.25)},
    ]
    for columns in (None, ["prompt"], ["nfe"], ["clip_score"]):  # single columns: csv quotes an empty cell
        subset = rows if columns is None else [{c: r.get(c) for c in columns} for r in rows]
        write_rows_csv(subset, tmp_path / "ours.csv")
        expected = pd.DataFrame(subset).to_csv(index=False)
        assert (tmp_path / "ours.csv").read_text() == expected, columns
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ours.csv"), pd.read_csv(io.StringIO(expected)))


def test_a_runs_metrics_row_is_read_as_pandas_reads_it(tmp_path, monkeypatch):
    """read_row_csv (the summary's reader of each run's metrics.csv) gives pd.read_csv(path).iloc[0] as plain
    values, type for type: typed by itself for plain cells, by pandas for anything else."""
    import math

    import numpy as np
    import pandas as pd

    from evalrun.results import read_row_csv, write_rows_csv

    def by_pandas(path):
        return {k: v.item() if hasattr(v, "item") else v for k, v in pd.read_csv(path).iloc[0].to_dict().items()}

    def same(a, b):
        return list(a) == list(b) and all(type(a[k]) is type(b[k]) and (a[k] == b[k] or (
            isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k]))) for k in a)

    rng = np.random.default_rng(0)
    plain = {"model": "tiny", "revision": None, "steps": 4, "seed": np.int64(-3), "guidance": 7.5, "fid": 1e-05,
             "clip": np.float32(0.1), "ok": True, "flag": np.bool_(False), "inf": -float("inf"), "nan": float("nan"),
             "kwargs": '{"a": 1}', "text": 'a "quoted", comma\nand newline', "filter": "na", "tiny": 5e-324,
             **{f"r{i}": float(v) for i, v in enumerate(rng.normal(size=50) * 10.0 ** rng.integers(-8, 8, 50))}}
    write_rows_csv([plain], tmp_path / "plain.csv")
    expected = by_pandas(tmp_path / "plain.csv")
    with monkeypatch.context() as patched:  # the runs' own files never need pandas
        patched.setattr(pd, "read_csv", lambda *a, **k: pytest.fail("read by pandas"))
        assert same(read_row_csv(tmp_path / "plain.csv"), expected)
    odd = ["1_000", " 5", "007", "+3", "0x10", "-", "1.5abc", "1e5", "Infinity", "-inf", "NA", "None", "TRUE",
           "12345678901234567890", ".5", "5.", "1,5", "nan ", "True "]
    for i, cell in enumerate(odd):
        (tmp_path / f"odd{i}.csv").write_text(f'a,b\n"{cell}",x\n')
        assert same(read_row_csv(tmp_path / f"odd{i}.csv"), by_pandas(tmp_path / f"odd{i}.csv")), cell
    for i, text in enumerate(("a,a\n1,2\n", "a,\n1,2\n", "a\n1\n2\n")):  # pandas renames, names, types over rows
        (tmp_path / f"shape{i}.csv").write_text(text)
        assert same(read_row_csv(tmp_path / f"shape{i}.csv"), by_pandas(tmp_path / f"shape{i}.csv")), text


def test_quantisation_and_pixel_hash_equal_their_plain_numpy_definitions():
    """to_uint8 (torch, in place) gives numpy's (clip(x) * 255).round() bytes, NaN and inf included, and
    pixel_hash is blake2b of the pixels followed by the shape, as written out here."""
    import hashlib

    from evalrun.images import pixel_hash, to_uint8

    rng = np.random.default_rng(0)
    images = rng.uniform(-0.1, 1.1, (5, 16, 24, 3)).astype(np.float32)
    images[0, :4, 0, 0] = (np.arange(4, dtype=np.float32) + 0.5) / 255  # exact halves: rounding to even
    images[1, 0, 0, 0], images[2, 0, 0, 1], images[3, 0, 1, 0] = np.nan, np.inf, -np.inf
    before = images.copy()
    pixels, nan = to_uint8(images)
    expected = (np.nan_to_num(images, nan=0.0).clip(0, 1) * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(pixels, expected)
    assert pixels.dtype == np.uint8 and list(nan) == [False, True, False, False, False]
    np.testing.assert_array_equal(images, before)  # the caller's array is left alone
    for image in pixels:
        assert pixel_hash(image) == hashlib.blake2b(image.tobytes() + str(image.shape).encode(), digest_size=16).hexdigest()
    assert pixel_hash(pixels[0]) != pixel_hash(pixels[0].transpose(1, 0, 2).copy())  # the shape counts


def test_prune_skips_an_entry_that_vanishes_while_it_runs(tmp_path, monkeypatch):
    """A run renames its temporary files into place while prune walks the store: a listed file that is
    gone by the time it is looked at is skipped, not a crash."""
    import evalrun.cache as cache

    store = tmp_path / "images" / "ab"
    store.mkdir(parents=True)
    for name in ("kept.png", "x.png.123.tmp"):
        (store / name).write_bytes(b"png")
    listed = list(cache.section_items(tmp_path, "images"))
    (store / "x.png.123.tmp").unlink()  # renamed away by its writer after the listing
    monkeypatch.setattr(cache, "section_items", lambda root, section, moved=None: iter(listed if section == "images" else []))
    assert [row[:3] for row in cache.listing(tmp_path) if row[0] == "images"] == [("images", 1, 3)]
    assert cache.prune(tmp_path, ["images"], 0) == (1, 3)
    assert not (store / "kept.png").exists()


def test_a_file_replaced_keeping_its_size_and_mtime_is_hashed_again(tmp_path):
    """cp -p / rsync -a of a same-sized file keeps size and mtime: the remembered digest (weights, edit inputs,
    reference images) must not survive it; the ctime (or inode) moves."""
    import hashlib
    import os
    import shutil

    from evalrun.hashing import file_sha256
    from evalrun.keys import _folder_listing

    (tmp_path / "in").mkdir()
    target, other = tmp_path / "in" / "a.bmp", tmp_path / "b.bmp"
    target.write_bytes(b"A" * 64)
    other.write_bytes(b"B" * 64)
    for path in (target, other):
        os.utime(path, ns=(1_577_836_800_000_000_000, 1_577_836_800_000_000_000))  # 2020-01-01
    before, listing = file_sha256(target), _folder_listing(tmp_path / "in")
    shutil.copy2(other, target)  # cp -p: same size, same mtime, new bytes
    assert target.stat().st_mtime_ns == other.stat().st_mtime_ns and target.stat().st_size == 64
    assert file_sha256(target) == hashlib.sha256(b"B" * 64).hexdigest() != before
    assert _folder_listing(tmp_path / "in") != listing


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "null"])
def test_a_run_json_that_is_not_an_object_is_recomputed_not_a_traceback(tmp_path, content):
    """run.json valid JSON but not an object (edited by hand, another tool's file): it records no configuration,
    so the run is computed there again; it raised AttributeError from the directory check."""
    common = ["model=tiny_ddpm", "num_images=1", "steps=2", "metrics=[]", "paths.image_store=none"]
    first = run_inprocess(*common, run_dir=tmp_path / "run")
    (tmp_path / "run" / "run.json").write_text(content)
    again = run_inprocess(*common, run_dir=tmp_path / "run")
    assert again["run_key"] == first["run_key"] and json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "complete"
