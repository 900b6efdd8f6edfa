"""The runner on the tiny model: a single run, a sweep with its summary, resume, and errors."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import cli, error_of, run_inprocess


def test_single_run_writes_images_csvs_grid_and_provenance(tmp_path):
    run_dir = tmp_path / "run"
    run_inprocess("num_images_per_prompt=2", "batch_size=3", run_dir=run_dir)
    images = pd.read_csv(run_dir / "images.csv")
    per_image = pd.read_csv(run_dir / "per_image.csv")
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert len(images) == len(per_image) == 12  # 6 doc prompts x 2 images
    assert sorted(images["image_index"].unique()) == [0, 1]
    assert images["generator_seed"].nunique() == 12
    for path in images["path"]:
        with Image.open(run_dir / path) as im:
            assert im.size == (32, 32) and im.mode == "RGB"
    with Image.open(run_dir / "grid.png") as grid:  # one labelled row per prompt: 2 tiles + text
        assert grid.height == 6 * 64 and grid.width == 2 * 64 + 360  # x2: the longest prompt wraps to 3 lines
    assert len(metrics) == 1
    row = metrics.iloc[0]
    assert row["model"] == "tiny" and row["scheduler"] == "default" and row["seed"] == 0
    assert row["scheduler_class"] == "PNDMScheduler"  # the class that ran, not "default"
    assert row["steps"] == 4 and row["n_images"] == 12 and row["dtype"] == "float32"
    assert row["clip_score"] == pytest.approx(per_image["clip_score"].mean(), rel=1e-12)
    assert 0 <= per_image["clip_score"].min() and per_image["clip_score"].max() <= 100
    record = json.loads((run_dir / "run.json").read_text())
    prov = record["provenance"]
    assert record["status"] == "complete" and record["higher_is_better"] == {"clip_score": True, "nfe": False, "sample_seconds_per_image": False,
                                                                     "peak_memory_gib": False}
    assert {c for c, d in record["columns"].items() if d["kind"] == "cost"} == {"nfe", "sample_seconds_per_image",
                                                                                "peak_memory_gib"}
    assert record["columns"]["clip_score"]["direction"] == "higher" and record["columns"]["clip_score"]["per_image"]
    assert "clip_score.clip_model" in record["columns"]["clip_score"]["depends_on"]
    # Cost: what made the images (Heun evaluates twice a step; size moves seconds and memory), never the seed
    cost_depends = record["columns"]["nfe"]["depends_on"]
    assert {"model", "scheduler", "scheduler_kwargs", "steps", "guidance_scale", "height", "width", "batch_size", "dtype",
            "device", "offload", "compile"} <= set(cost_depends) and "seed" not in cost_depends
    assert record["columns"]["sample_seconds_per_image"]["depends_on"] == cost_depends
    assert prov["smoke_model_random_weights"] is True  # the loaded folder carries the tiny builders' marker
    assert prov["scheduler_config"]["class"] == "PNDMScheduler"
    assert prov["metrics"]["clip_score"]["clip_model"] == "evalrun/tiny-clip"
    assert prov["versions"]["diffusers"] and prov["batch_size"] == 3
    assert set(prov["model_weights"]["weights_sha256"]) >= {"unet", "vae", "text_encoder"}
    assert prov["environment"]["device"] == "cpu"


def test_sweep_summary_equals_means_of_runs(smoke_sweep):
    runs = pd.concat([pd.read_csv(p) for p in sorted(smoke_sweep.glob("*/metrics.csv"))], ignore_index=True)
    assert len(runs) == 4
    assert sorted(zip(runs["scheduler"], runs["seed"])) == [("ddim", 0), ("ddim", 1), ("dpm", 0), ("dpm", 1)]
    summary = pd.read_csv(smoke_sweep / "summary.csv")
    assert len(summary) == 2 and list(summary.columns[:1]) == ["scheduler"]
    for _, row in summary.iterrows():
        values = runs.loc[runs["scheduler"] == row["scheduler"], "clip_score"]
        assert row["clip_score_mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert row["clip_score_std"] == pytest.approx(values.std(ddof=1), rel=1e-9)
        assert row["clip_score_n"] == 2 and row["seeds"] == "0 1"
        assert row["clip_score_ci95_low"] < row["clip_score_mean"] < row["clip_score_ci95_high"]
    # The callback also built the report from the same run dirs.
    assert (smoke_sweep / "report" / "index.html").exists() and (smoke_sweep / "report" / "report.md").exists()
    # Different schedulers really ran: their images differ.
    ddim = sorted(smoke_sweep.glob("*scheduler=ddim*seed=0*/images/00000_00.png"))[0]
    dpm = sorted(smoke_sweep.glob("*scheduler=dpm*seed=0*/images/00000_00.png"))[0]
    with Image.open(ddim) as a, Image.open(dpm) as b:
        assert a.tobytes() != b.tobytes()


def test_rerun_reuses_finished_run_and_images(tmp_path, caplog):
    run_dir = tmp_path / "run"
    run_inprocess("prompts.limit=2", run_dir=run_dir)
    first = (run_dir / "metrics.csv").read_text()
    mtime = (run_dir / "metrics.csv").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        run_inprocess("prompts.limit=2", run_dir=run_dir)
    assert "already complete" in caplog.text
    assert (run_dir / "metrics.csv").stat().st_mtime_ns == mtime
    # An interrupted run (no run.json) keeps its finished images and recomputes the same numbers.
    (run_dir / "run.json").unlink()
    (run_dir / "images" / "00001_00.png").unlink()
    record = run_inprocess("prompts.limit=2", run_dir=run_dir)
    assert record["provenance"]["images"]["reused"] == 2  # one from the run dir, one relinked from the store
    assert record["provenance"]["images"]["sampled"] == 0
    assert (run_dir / "metrics.csv").read_text() == first


@pytest.mark.parametrize("overrides, expected", [
    (["scheduler.class_name=NoSuchScheduler"], "unknown scheduler class 'NoSuchScheduler'; valid: "),
    (["model.path=/does/not/exist"], "model.path='/does/not/exist' does not exist"),
    (["seed=-1"], "seed must be a non-negative integer"),
    (["grid_max_images=-1"], "grid_max_images must be a positive integer, got -1"),  # ran, dropping an image
    (["seed=4294967296"], "seed must be a non-negative integer (at most 2**32 - 1), got 4294967296"),
    # Metric settings int() truncated (degree=2.5 ran a quadratic kernel) or numpy refused after sampling.
    (["metrics=[kid]", "reference=folder", "reference.path=.", "metrics.kid.degree=2.5"],
     "metrics.kid.degree must be an integer >= 1, got 2.5"),
    (["metrics=[kid]", "reference=folder", "reference.path=.", "metrics.kid.subsets=true"],
     "metrics.kid.subsets must be an integer >= 1, got True"),
    (["metrics=[kid]", "reference=folder", "reference.path=.", "metrics.kid.seed=-1"],
     "metrics.kid.seed must be null (the run's seed) or an integer from 0 to 2**32 - 1, got -1"),
    (["metrics=[fid_inf]", "reference=folder", "reference.path=.", "metrics.fid_inf.seed=4294967296"],
     "metrics.fid_inf.seed must be null (the run's seed) or an integer from 0 to 2**32 - 1"),
    (["metrics=[inception_score]", "metrics.inception_score.splits=2.5"],
     "metrics.inception_score.splits must be an integer >= 1, got 2.5"),
    (["height=30"], "height=30 must be a multiple of 8"),
    (["dtype=float8"], "dtype='float8' is not valid"),
    (["steps=abc"], "steps must be a positive integer, got 'abc'"),
    (["model=tiny_ddpm", "scheduler=euler"], "DDPMPipeline does not scale its starting noise by the scheduler's"),
    (["model=tiny_dit", "prompts=classes", "scheduler=dpm_sde"], "calls scheduler.step without the per-image generators"),
    (["model=tiny_ddpm", "metrics=[clip_score]"], "metric 'clip_score' needs a prompt or caption per image, which model 'tiny_ddpm' (task unconditional) does not give"),
    (["metrics.clip_score.scale=-1"], "metrics.clip_score.scale must be a finite number > 0, got -1"),
    (["metrics.clip_score.scale=abc"], "metrics.clip_score.scale must be a finite number > 0, got 'abc'"),
    # int() ran batch_size=2.5 at 2 and recorded 2.5; messages named no key, or feature_layer for diversity's layer.
    (["metrics.clip_score.batch_size=2.5"], "metrics.clip_score.batch_size must be an integer >= 1, got 2.5"),
    (["metrics.clip_score.batch_size=0"], "metrics.clip_score.batch_size must be an integer >= 1, got 0"),
    (["model=tiny_pix2pix", "prompts=edit_demo", "metrics=[clip_directional]", "metrics.clip_directional.batch_size=abc"],
     "metrics.clip_directional.batch_size must be an integer >= 1, got 'abc'"),
    (["metrics=[diversity]", "metrics.diversity.layer=foo"], "metrics.diversity.layer='foo': clip gives "),
    # NaN and inf passed "<= 0" checks: cmmd.sigma=inf scored 0.0, kid.coef=nan gave nan.
    (["metrics=[cmmd]", "reference=folder", "reference.path=.", "metrics.cmmd.sigma=inf"],
     "metrics.cmmd.sigma must be a finite number > 0, got inf"),
    (["metrics=[cmmd]", "reference=folder", "reference.path=.", "metrics.cmmd.scale=nan"],
     "metrics.cmmd.scale must be a finite number > 0, got nan"),
    (["metrics=[kid]", "reference=folder", "reference.path=.", "metrics.kid.coef=nan"],
     "metrics.kid.coef must be a finite number, got nan"),
    (["metrics=[kid]", "reference=folder", "reference.path=.", "metrics.kid.gamma=abc"],
     "metrics.kid.gamma must be null (1 / feature dim) or a finite number > 0, got 'abc'"),
    # A text field no record has: found with the records, before the pipeline loads and samples.
    (["metrics.clip_score.text_key=foo"],
     "metrics.clip_score.text_key='foo': the records have no 'foo' field; fields with text: "),
    (["metrics=[clip_directional]"], "metric 'clip_directional' needs an input image per edit, which model 'tiny' (task text2img) does not give"),
    (["prompts=parti", "prompts.path=/no/parti.tsv"], "prompts.path='/no/parti.tsv' does not exist"),
    (["model=tiny_dit"], "model 'tiny_dit' (task class2img) reads ImageNet classes (prompts=classes)"),
    (["protocol=adm"], "protocol=adm selects prompts='classes', which model 'tiny' (task text2img) does not read "
                       "(it reads a prompt set"),  # it blamed the prompts, which the user never set
    (["strength=0.5"], "strength=0.5 has no effect on model 'tiny'"),
    # Knobs a task does not use would be recorded nowhere, and averaged over as if they were seeds.
    (["model=tiny_ddpm", "height=64"], "height=64 has no effect on model 'tiny_ddpm' (task unconditional"),
    (["model=tiny_ddpm", "guidance_scale=5"], "guidance_scale=5 has no effect on model 'tiny_ddpm'"),
    (["model=tiny_ddpm", "num_images_per_prompt=3"], "num_images_per_prompt=3 has no effect on model 'tiny_ddpm'"),
    (["model=tiny_dit", "prompts=classes", "width=64"], "width=64 has no effect on model 'tiny_dit' (task class2img"),
    (["guidance_scale=nan"], "guidance_scale must be a finite number >= 0, got nan"),
    (["compile=maybe"], "compile must be false, true or a torch.compile mode (default, lite,"),
    (["model=tiny_img2img", "prompts=edit_demo", "strength=1.5"], "strength must be in (0, 1], got 1.5"),
    (["attention=sage"], "attention=sage needs the sageattention module, which is not installed"),
    pytest.param(["device=mps"], "device='mps' but MPS (Apple GPUs) is not available here",
                 marks=pytest.mark.skipif("sys.platform == 'darwin'", reason="MPS may be there")),
    # Strings that Python reads as true ("off", "no") and values that failed deep inside PIL or int().
    (["prompts.shuffle=off"], "prompts.shuffle must be true or false, got 'off'"),
    (["metrics=[inception_score]", "metrics.inception_score.shuffle=no"],
     "metrics.inception_score.shuffle must be true or false, got 'no'"),
    (["metrics=[fid]", "reference=folder", "reference.path=.", "metrics.fid.bootstrap=200",
      "metrics.fid.bootstrap_reference=no"], "metrics.fid.bootstrap_reference must be true or false, got 'no'"),
    (["model=tiny_dit", "prompts=classes", "prompts.words=null", "prompts.all=no"],
     "prompts.all must be true or false, got 'no'"),
    (["metrics=[kid]", "reference=folder", "reference.path=.", "reference.limit=4", "reference.shuffle_seed=-2"],
     "reference.shuffle_seed must be null or an integer from 0 to 2**32 - 1, got -2"),
    (["metrics=[kid]", "reference=folder", "reference.path=.", "reference.strict=no"],
     "reference.strict must be true or false, got 'no'"),
    (["metrics=[kid]", "reference=folder", "reference.path=.", "reference.resize=-5"],
     "reference.resize must be a positive integer, got -5"),
    (["metrics=[kid]", "reference=folder", "reference.path=.", "reference.center_crop=abc"],
     "reference.center_crop must be a positive integer, got 'abc'"),
    (["guidance_scale=inf"], "guidance_scale must be a finite number >= 0, got inf"),
    (["model=tiny_flux", "true_cfg_scale=nan", "prompts.negative_prompt=blurry"],
     "true_cfg_scale must be a finite number >= 0, got nan"),
    # Offline, a hub checkpoint or CLIP model that is not cached names the key for a local copy.
    (["model=sd15", "metrics=[]", "prompts.limit=1"], "and set model.path=DIR"),
    (["metrics.clip_score.clip_model=openai/clip-vit-base-patch16"], "and set metrics.clip_score.clip_model=DIR"),
])
def test_bad_input_gives_one_clear_line(tmp_path, overrides, expected):
    message = error_of(*overrides, run_dir=tmp_path)
    assert expected in message
    if "class_name" in overrides[0]:
        assert "DPMSolverMultistepScheduler" in message  # the valid options are listed


def test_shell_completion_as_the_readme_installs_it(monkeypatch):
    """-sc install=bash (README) and the query=bash call it makes on each Tab: their argument is not an
    override (it was refused as "install is not a key of the config")."""
    installed = cli("-sc", "install=bash")
    assert installed.returncode == 0 and "hydra_bash_completion" in installed.stdout
    monkeypatch.setenv("COMP_LINE", "evalrun model=sd1")
    query = cli("-sc", "query=bash")
    assert query.returncode == 0 and "model=sd15" in query.stdout.split()


@pytest.mark.parametrize("overrides, expected", [
    (["scheduler=nosuch"], "evalrun: error: scheduler=nosuch: no such scheduler; valid: "),
    (["metrics=[clip_score,nosuch]"], "unknown metric(s) nosuch; valid: "),
    (["seed=-1"], "evalrun: error: seed must be a non-negative integer"),
    # Hydra's hint for a misspelt key is to add it with +: refused where nothing would read it.
    (["stpes=10"], "evalrun: error: stpes is not a key of the config; did you mean steps=10?"),
    (["+stpes=10"], "evalrun: error: +stpes=10 adds a top-level key evalrun never reads; did you mean steps=10?"),
    (["+model.pathh=x"], "+model.pathh=x adds model.pathh, which no model config has; did you mean model.path=x?"),
    (["+scheduler.kwagrs.eta=1"], "did you mean +scheduler.kwargs.eta=1?"),
    # A key the chosen option does not read (prompts=doc has no file): Hydra suggested +prompts.path=, which
    # then ran the doc prompts and read no file.
    (["prompts.path=my.txt"], "evalrun: error: prompts.path=my.txt: prompts=doc does not read prompts.path "
                              "(prompts=drawbench, edit_demo, file, instructpix2pix_demo, parti do); choose one, "
                              "e.g. prompts=file prompts.path=my.txt"),
    (["+prompts.path=my.txt"], "evalrun: error: +prompts.path=my.txt: prompts=doc does not read prompts.path"),
    (["reference=npz", "reference.limit=3"], "reference.limit=3: reference=npz does not read reference.limit "
                                             "(reference=dataset, folder do); choose one, e.g. reference=folder"),
    (["seed=0,1", "-m", "prompts.limit=2"], "evalrun: error: -m between overrides: put it at the end (or the start) "
                                            "of the command line: "),
])
def test_cli_prints_one_line_and_exits_non_zero(tmp_path, overrides, expected):
    proc = cli(f"hydra.run.dir={tmp_path}", *overrides, check=False)
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    if overrides[0].startswith("scheduler="):
        assert "dpm_karras" in proc.stderr and "euler_a" in proc.stderr  # the valid options are listed
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # not Hydra's page of options


def test_summary_groups_ignore_settings_declared_to_follow_the_seed(tmp_path):
    """A metric setting that defaults to the run's seed (a KID subset seed) must not split seed groups."""
    from evalrun.aggregate import summarise
    from evalrun.runs import load_runs

    for seed in (0, 1):
        d = tmp_path / f"s{seed}"
        d.mkdir()
        (d / "run.json").write_text(json.dumps({
            "status": "complete", "config_columns": ["model", "seed", "kid.seed"], "metric_columns": ["kid_mean"],
            "columns": {"kid_mean": {"direction": "lower", "kind": "score"}}, "seed_columns": ["kid.seed"]}))
        pd.DataFrame([{"model": "m", "seed": seed, "kid.seed": seed, "kid_mean": 0.1 * (seed + 1)}]).to_csv(
            d / "metrics.csv", index=False)
    summary = summarise(load_runs([tmp_path]))
    assert len(summary) == 1 and summary["kid_mean_n"].iloc[0] == 2
    assert summary["kid_mean_mean"].iloc[0] == pytest.approx(0.15)

    # Runs that set it explicitly (kid.seed=5, =6) are configurations of their own, never seeds of the
    # followers: the seed-0 run of each explicit value stays alone, the followers still pool.
    for value in (5, 6):
        d = tmp_path / f"explicit{value}"
        d.mkdir()
        (d / "run.json").write_text(json.dumps({
            "status": "complete", "config_columns": ["model", "seed", "kid.seed"], "metric_columns": ["kid_mean"],
            "columns": {"kid_mean": {"direction": "lower", "kind": "score"}}, "seed_columns": []}))
        pd.DataFrame([{"model": "m", "seed": 0, "kid.seed": value, "kid_mean": value / 10}]).to_csv(
            d / "metrics.csv", index=False)
    summary = summarise(load_runs([tmp_path])).set_index("kid.seed")
    assert sorted(summary.index.astype(str)) == ["(follows seed)", "5", "6"]
    assert summary.loc["(follows seed)", "kid_mean_n"] == 2 and summary.loc["(follows seed)", "seeds"] == "0 1"
    assert summary["kid_mean_mean"].astype(float).round(6).to_dict()["(follows seed)"] == pytest.approx(0.15)
    assert [summary.loc[k, "kid_mean_n"] for k in summary.index if str(k) != "(follows seed)"] == [1, 1]


def test_varying_config_columns_are_those_pandas_counts_as_varying():
    """group_keys counts distinct values as text without pandas; the same columns vary as with
    astype(str).nunique(dropna=False), over every type a run's CSV row can hold."""
    from evalrun.aggregate import group_keys

    runs = pd.DataFrame({"same_float": [1.0, 1.0, 1.0], "nan_and_float": [float("nan"), 1.0, 1.0],
                         "two_nans": [float("nan"), float("nan"), float("nan")], "none_and_text": [None, "a", "a"],
                         "int": [4, 4, 5], "bool": [True, True, True], "mixed": [1, 1.0, "1"],
                         "close_floats": [0.1 + 0.2, 0.3, 0.3], "seed": [0, 1, 2]})
    runs.attrs.update(config_columns=list(runs.columns), seed_columns=["seed"])
    by_pandas = [c for c in runs.columns if c != "seed" and runs[c].astype(str).nunique(dropna=False) > 1]
    keys = group_keys(runs)
    assert keys[:len(by_pandas)] == by_pandas and set(keys[len(by_pandas):]) == {"same_float", "two_nans", "bool"}
    assert by_pandas == ["nan_and_float", "none_and_text", "int", "mixed", "close_floats"]


def test_one_bad_job_fails_alone_and_is_listed(tmp_path):
    # A job that fails only once it runs (its prompt file is empty: config checks pass), one job a batch, the
    # bad one first: the batch after a failure still runs.
    empty, good = tmp_path / "empty.txt", tmp_path / "good.txt"
    empty.write_text("")
    good.write_text("a red cube\n")
    sweep = ("prompts=file", f"prompts.path={empty},{good}")
    proc = cli(*sweep, "hydra.sweeper.max_batch_size=1", f"hydra.sweep.dir={tmp_path / 's'}", "-m", check=False)
    assert proc.returncode == 1  # the sweep still reports failure
    assert f"evalrun: error: prompt set 'file' ({empty}) is empty: it holds no prompts" in proc.stderr
    assert "Traceback" not in proc.stderr  # a user's mistake is its one line, in a sweep too
    assert (tmp_path / "s" / "report" / "report.md").exists()  # the end of the sweep still ran
    summary = pd.read_csv(tmp_path / "s" / "summary.csv")  # refreshed after each job, not only at the end
    assert len(summary) == 1 and summary["clip_score_n"].iloc[0] == 1 and str(summary["seeds"].iloc[0]) == "0"
    failed = pd.read_csv(tmp_path / "s" / "failed_runs.csv")
    assert len(failed) == 1 and "empty.txt" in failed["run_dir"].iloc[0]
    assert "is empty" in failed["error"].iloc[0]
    # Without the summary callback (the one that exits 1 after the report), the sweep fails as Hydra's does.
    bare = cli(*sweep, "~hydra.callbacks.summary", f"hydra.sweep.dir={tmp_path / 'bare'}", "-m", check=False)
    assert bare.returncode == 1 and not (tmp_path / "bare" / "summary.csv").exists()


def test_changed_prompt_file_is_not_mistaken_for_a_finished_run(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cube\n")
    run_dir = tmp_path / "run"
    run_inprocess("prompts=file", f"prompts.path={prompts}", run_dir=run_dir)
    prompts.write_text("a blue sphere\n")  # same path, new content
    record = run_inprocess("prompts=file", f"prompts.path={prompts}", run_dir=run_dir)
    assert record["provenance"]["images"]["sampled"] == 1
    assert pd.read_csv(run_dir / "per_image.csv")["prompt"].tolist() == ["a blue sphere"]


def test_summary_warns_when_averaged_runs_differ_in_provenance(tmp_path, caplog):
    import shutil

    from evalrun.aggregate import write_summary

    run_inprocess("prompts.limit=1", "seed=0", run_dir=tmp_path / "s" / "seed0")
    run_inprocess("prompts.limit=1", "seed=1", run_dir=tmp_path / "s" / "seed1")
    record = json.loads((tmp_path / "s" / "seed1" / "run.json").read_text())
    record["provenance"]["versions"]["diffusers"] = "0.41.0"  # as if run with another diffusers
    (tmp_path / "s" / "seed1" / "run.json").write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING):
        write_summary(tmp_path / "s")
    assert "differ in provenance" in caplog.text and "versions.diffusers" in caplog.text
    assert "runs averaged together for all runs differ" in caplog.text  # no config column varies: one configuration
    shutil.rmtree(tmp_path / "s" / "seed1")


def test_grid_tiles_keep_their_size_unless_the_text_needs_height():
    """Tiles are enlarged by the smallest whole factor whose row holds its text (6 px + 15 per line),
    and the text is drawn as ImageDraw draws it in place."""
    from PIL import ImageDraw

    from evalrun.grid import GridBuilder, _font

    tile = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    one_line = GridBuilder([[0], [1]], [["a red cube"], ["a blue ball"]])
    three_lines = GridBuilder([[0]], [["an instruction", "the input's caption", "the output's caption"]])
    unlabelled = GridBuilder([[0, 1]])
    for grid in (one_line, three_lines, unlabelled):
        grid.add(0, tile)
        grid.add(1, tile)
    plain = np.asarray(one_line.render())
    assert plain.shape == (2 * 32, 32 + 360, 3)  # 6 + 15 = 21 px of text fit a 32 px row
    np.testing.assert_array_equal(plain[:32, :32], tile)
    enlarged = np.asarray(three_lines.render())
    assert enlarged.shape == (64, 64 + 360, 3)  # 6 + 45 = 51 px: x2
    np.testing.assert_array_equal(enlarged[::2, :64:2], tile)
    assert np.asarray(unlabelled.render()).shape == (32, 64, 3)
    expected = Image.new("RGB", (32 + 360, 64), "white")
    expected.paste(Image.fromarray(tile), (0, 0))
    expected.paste(Image.fromarray(tile), (0, 32))
    draw = ImageDraw.Draw(expected)
    for row, text in enumerate(["a red cube", "a blue ball"]):
        draw.text((32 + 6, 32 * row + 3), text, fill="black", font=_font())
    np.testing.assert_array_equal(plain, np.asarray(expected))


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (7, 1), (13, 17), (64, 392)])
def test_grid_png_encoder_round_trips_through_pillow(shape):
    import io

    from evalrun.grid import encode_png

    rgb = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    rgb[:, : shape[1] // 2] = 255  # flat areas and noise, as grids have
    with Image.open(io.BytesIO(encode_png(rgb))) as decoded:
        assert decoded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(decoded), rgb)


def test_a_job_that_crashes_keeps_its_traceback_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """Not a user's mistake: its traceback is logged (one job's bug must stay debuggable), the other jobs
    still run and the sweep exits non-zero."""
    import evalrun.run

    real_run = evalrun.run.run

    def crash_on_seed_1(cfg, run_dir, *args, **kwargs):
        if cfg.seed == 1:
            raise RuntimeError("a bug, not a config mistake")
        return real_run(cfg, run_dir, *args, **kwargs)

    monkeypatch.setattr(evalrun.run, "run", crash_on_seed_1)
    proc = cli("seed=1,0", "prompts.limit=1", "metrics=[]", f"hydra.sweep.dir={tmp_path}", "-m", check=False)
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    assert "Traceback" in output and "RuntimeError: a bug, not a config mistake" in output
    assert "crash_on_seed_1" in output  # the frame that raised
    assert pd.read_csv(tmp_path / "summary.csv")["seeds"].astype(str).tolist() == ["0"]
    assert "RuntimeError" in pd.read_csv(tmp_path / "failed_runs.csv")["error"].iloc[0]


def test_summary_and_report_take_one_run_dir(tmp_path):
    """A single run's (or a scored folder's) own directory is a sweep of that one run, as the README says."""
    from evalrun.aggregate import main as aggregate_main
    from evalrun.report.__main__ import main as report_main

    run_dir = tmp_path / "run"
    run_inprocess("prompts.limit=2", run_dir=run_dir)
    assert aggregate_main([str(run_dir)]) == 0
    summary = pd.read_csv(run_dir / "summary.csv")
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert len(summary) == 1 and summary["clip_score_mean"].iloc[0] == pytest.approx(metrics["clip_score"].iloc[0])
    assert report_main([str(run_dir), "--out", str(tmp_path / "report")]) == 0
    assert "clip_score" in (tmp_path / "report" / "report.md").read_text().lower()


def test_added_keys_that_something_reads_are_let_through():
    """Keys a user may add on purpose: open mappings (scheduler kwargs, pipeline call kwargs), keys config.yaml
    reads with oc.select, metric settings (the registry checks those), ++ and config groups."""
    from conftest import compose

    from evalrun.added_keys import check_added_keys
    from evalrun.errors import ConfigError

    fine = ["+scheduler.kwargs.stochastic_sampling=true", "+model.call_kwargs.clean_caption=true",
            "+model.default_strength=0.5", "+metrics.clip_score.batch=8", "++steps=3", "+prompts.my_note=x"]
    check_added_keys(fine, compose(*fine))
    with pytest.raises(ConfigError, match=r"did you mean prompts\.limit=2\?"):
        check_added_keys(["+prompts.limt=2"], compose("+prompts.limt=2"))
    with pytest.raises(ConfigError, match=r"\+\+stpes=2 adds a top-level key evalrun never reads; did you mean steps=2"):
        check_added_keys(["++stpes=2"], compose("++stpes=2"))  # ++ adds a key too (it ran with the old steps)
    with pytest.raises(ConfigError, match=r"which no scheduler option uses; did you mean scheduler\.kwargs\.shift=3\?"):
        check_added_keys(["+scheduler.kwargs.shfit=3"], compose("+scheduler.kwargs.shfit=3"))
    with pytest.raises(ConfigError, match=r"evalrun never reads; the top-level keys are .*guidance_scale"):
        check_added_keys(["+foo=1"], compose("+foo=1"))


@pytest.mark.parametrize("argv, expected", [
    (["stpes=10"], "stpes is not a key of the config; did you mean steps=10?"),
    (["model.pathh=/x"], "model.pathh is not a key of the config; did you mean model.path=/x?"),
    (["prompts.limt=2"], "did you mean prompts.limit=2?"),
    (["metrics=[kid]", "metrics.kid.subsetsize=8"], "did you mean metrics.kid.subset_size=8?"),
    (["scheduler=flow_euler", "scheduler.kwargs.shfit=3"], "did you mean scheduler.kwargs.shift=3?"),
    (["metrics=[clip_score,nosuch]"], "unknown metric(s) nosuch; valid: "),
    # Optional groups: Hydra would run the default config without the misspelt experiment.
    (["experiment=scheduler_comparision", "-m"], "experiment=scheduler_comparision: no such experiment; did you mean "
                                                 "experiment=scheduler_comparison? valid: edit_demo, "
                                                 "scheduler_comparison, smoke_sweep"),
    (["model=sd15", "debug=smoek"], "debug=smoek: no such debug; did you mean debug=smoke? valid: smoke"),
    # Any group: Hydra answers a missing option with a page of options and a pointer to HYDRA_FULL_ERROR.
    (["model=sdxll"], "model=sdxll: no such model; did you mean model=sdxl? valid: chroma,"),
    (["scheduler=dpm,eular", "-m"], "scheduler=eular: no such scheduler; did you mean scheduler=euler? valid: ddim,"),
    (["reference=nothing"], "reference=nothing: no such reference; valid: "),
    # Tracebacks before: a key the run reads deleted, two modes, and the job dir as working directory.
    (["~seed"], "~seed deletes seed, which evalrun reads; set a value instead (seed=...)"),
    (["~model.height"], "~model.height deletes model.height, which evalrun reads"),
    (["seed=0,1", "-m", "--cfg", "job"], "--multirun and --cfg cannot be given together"),
    (["hydra/launcher=joblb", "seed=0,1", "-m"], "hydra/launcher=joblb: no such launcher; did you mean "
                                                 "hydra/launcher=joblib? valid: basic, evalrun_joblib,"),
    (["hydra.job.chdir=true", "prompts.path=mine.txt"], "reads relative paths (prompts.path, model.path, "
                                                        "reference.path) from where you launch it; leave"),
    (["hydra.job.chdir='true'", "prompts.path=mine.txt"], "hydra.job.chdir='true': evalrun writes each job's files"),
    # Two jobs in one dir (the second refused as another configuration's), a traceback, and "Launching 0 jobs".
    (["hydra.job.config.override_dirname.exclude_keys=[seed]", "seed=0,1", "-m"],
     "names each sweep job's dir by all of its overrides, so that two jobs never share one"),
    (["guidance_scale=interval(1,2)", "-m"], "interval() is a range for an optimising sweeper (Optuna, Nevergrad)"),
    (["scheduler=glob(zzz*)", "-m"], "scheduler=glob(zzz*) matches no scheduler option; scheduler options: ddim,"),
    # Keys no packaged config has, far from all: Hydra's page ("Could not override ... not in struct").
    (["my_own_knob=1"], "my_own_knob is not a key of the config (evalrun --help lists them); a key of your own is "
                        "added with +my_own_knob=1"),
    (["reference=adm", "reference.foo=1"], "reference.foo is not a key of any reference config (they have "
                                           "center_crop, image_column, kind, limit, name, path,"),
    (["metrics.fid.foo=1"], "metrics.fid.foo: metric fid has no setting 'foo'; its settings: batch_size, bootstrap,"),
    (["metrics.nope.x=1"], "metrics.nope.x: there is no metric 'nope'; valid: adm, clip_directional,"),
    (["metrics=[clip_score]", "metrics.kid.subsets=5"], "metrics.kid.subsets: kid is not among this run's metrics "
                                                        "(clip_score); add it: metrics=[clip_score,kid]"),
    # No list on the command line: the model preset's (an edit model's) or config.yaml's.
    (["metrics.kid.subsets=5"], "metrics.kid.subsets: kid is not among this run's metrics (clip_score); add it: "
                                "metrics=[clip_score,kid]"),
    (["model=instruct_pix2pix", "metrics.kid.subsets=5"], "kid is not among this run's metrics (clip_directional, "
                                                          "clip_image_similarity, clip_score); add it: metrics=["),
    # Hydra's grammar read otherwise than meant: a list merged two options into one run; several values
    # without -m, and an unquoted & were pages and tracebacks.
    (["scheduler=[ddim,dpm]"], "scheduler=[ddim,dpm]: scheduler takes one option per run; to compare several, "
                               "sweep them: scheduler=ddim,dpm -m"),
    (["model=[tiny,tiny_sd3]", "-m"], "model takes one option per run; to compare several, sweep them: "
                                      "model=tiny,tiny_sd3 -m"),
    (["prompts=[doc]"], "prompts=[doc]: prompts takes one option, not a list: prompts=doc"),
    (["seed=0,1,2"], "seed=0,1,2 gives several values: add -m (--multirun) to run one job per value"),
    (["metrics=clip_score,fid"], "metrics=clip_score,fid: a run's metrics are one list, metrics=[clip_score,fid] "
                                 "(with -m, metrics=clip_score,fid would sweep one metric per job)"),
    (["prompts=parti", "prompts.category=Food & Beverage"], "Hydra cannot read this value (LexerNoViableAltException:"
                                                            " prompts.category=Food & Beverage); quote it, e.g. "
                                                            "prompts.category='Food & Beverage'"),
    # The options meant: the same name in other case, one edit away, those a name begins, another tool's name.
    (["model=sd1.5"], "model=sd1.5: no such model; did you mean model=sd15? valid:"),
    (["model=sd16"], "did you mean model=sd14 or model=sd15? valid:"),
    (["model=SDXL"], "did you mean model=sdxl? valid:"),
    (["model=sd35"], "did you mean model=sd35_large or model=sd35_large_turbo or model=sd35_medium? valid:"),
    (["scheduler=dpmpp_2m"], "did you mean scheduler=dpm? valid:"),
    (["scheduler=DPM++_2M_Karras"], "did you mean scheduler=dpm_karras? valid:"),
    # Hydra refuses a kwarg the option does not hold in several lines (not in struct): ++ adds or sets it.
    (["scheduler=dpm,ddim", "scheduler.kwargs.use_karras_sigmas=true", "-m"],
     "scheduler=dpm does not set use_karras_sigmas in its kwargs, so Hydra cannot override it; add it with "
     "++scheduler.kwargs.use_karras_sigmas=true"),
])
def test_a_misspelt_key_is_answered_before_hydra_in_one_line(argv, expected):
    from evalrun.override_keys import check_command_line

    assert expected in check_command_line(argv)


def test_the_python_api_takes_value_lists_without_dash_m():
    from evalrun.override_keys import check_command_line

    assert check_command_line(["seed=0,1", "scheduler=ddim,dpm"], cli=False) is None


@pytest.mark.parametrize("argv", [
    # A list set anywhere on the command line (swept, globbed, a sweeper param): the default list says nothing.
    ["metrics=[clip_score,fid],[fid,kid]", "metrics.fid.batch_size=8", "-m"],
    ["metrics=glob(*)", "metrics.fid.batch_size=8", "-m"],
    ["hydra.sweeper.params.metrics=[fid]", "metrics.fid.batch_size=8", "-m"],
    ["hydra.mode=MULTIRUN", "seed=0,1"],  # Hydra's other way to ask for a sweep
    ["prompts.texts=[a red cube,a blue ball]"], ["prompts=parti", "prompts.category=[Animals,Vehicles]"],
    ["prompts.negative_prompt='blurry, ugly'"], ["height=${width}"], ["seed=range(0,3)", "-m"],
])
def test_valid_command_lines_pass(argv):
    from evalrun.override_keys import check_command_line

    assert check_command_line(argv) is None


@pytest.mark.parametrize("argv, expected", [
    (["metrics=[clip_score,fid],[clip_score,kid]"], "gives several values: add -m (--multirun) to run one job per value"),
    (["prompts.negative_prompt=blurry,ugly"], "add -m (--multirun) to run one job per value, or quote it for one value "
                                              "holding a comma: prompts.negative_prompt='blurry,ugly' (in a shell: "
                                              "\"prompts.negative_prompt='blurry,ugly'\")"),
    (["seed=range(0,3)"], "seed=range(0,3) gives several values: add -m (--multirun) to run one job per value"),
    (["prompts.negative_prompt=don't"], "quote it, e.g. prompts.negative_prompt=\"don't\" (in a shell: "
                                        "\"prompts.negative_prompt=\\\"don't\\\"\")"),
])
def test_grammar_messages_name_a_fix_that_works(argv, expected):
    from evalrun.override_keys import check_command_line

    assert check_command_line(argv).endswith(expected), check_command_line(argv)


def test_a_metric_setting_added_with_plus_is_refused_once_composed():
    """+metrics.kid.subset_size=2 (what Hydra advises for metrics.kid.subset_size=2) switched kid on, half
    configured: without its preset, the smoke profile's tiny Inception was not used."""
    from conftest import compose
    from evalrun.added_keys import check_added_keys
    from evalrun.errors import ConfigError

    overrides = ["metrics=[clip_score]", "+metrics.kid.subset_size=2"]
    with pytest.raises(ConfigError, match=r"^\+metrics.kid.subset_size=2 adds a setting of kid, which is not among "
                                          r"this run's metrics \(clip_score\): it would run kid half-configured; list "
                                          r"it and set it without \+: metrics=\[clip_score,kid\] metrics.kid.subset_size=2$"):
        check_added_keys(overrides, compose(*overrides))
    listed = ["metrics=[fd]", "+metrics.fd.feature_extractor_options.pos_embedding=interpolate"]
    check_added_keys(listed, compose(*listed))  # a key of an open mapping of a listed metric: fine


def test_keys_the_configs_define_or_ones_own_configs_may_define_go_to_hydra():
    from evalrun.override_keys import check_command_line

    fine = ["seed=1", "steps=10", "model=sd15", "model.path=/x", "prompts.limit=2", "scheduler.kwargs.shift=3",
            "metrics.kid.subset_size=8", "model.call_kwargs.clean_caption=true", "paths.output_dir=/o",
            "scheduler=flow_euler", "metrics=glob(clip_*)", "hydra/launcher=my_own_plugin", "~experiment", "++scheduler.kwargs.use_karras_sigmas=1",
            "hydra.sweep.dir=/s", "+stpes=1", "experiment=smoke_sweep", "reference.path=/r"]
    assert check_command_line(fine) is None
    # With a config dir of one's own, a key no packaged config has may be that config's: Hydra decides.
    assert check_command_line(["hydra.searchpath=[file:///mine]", "my_own_knob=1", "model.my_key=1"]) is None


def test_an_experiment_of_your_own_is_found_on_the_searchpath_and_a_missing_one_refused(tmp_path):
    import evalrun
    from evalrun.composition import compose
    from evalrun.errors import ConfigError
    from evalrun.override_keys import check_command_line, check_optional_choices

    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\nsteps: 3\n")
    search = f"hydra.searchpath=[file://{tmp_path}]"
    assert check_command_line([search, "experiment=mine"]) is None  # left to the check on the composition
    found = compose([search, "experiment=mine"], hydra=True)
    check_optional_choices(found.hydra)
    assert found.steps == 3
    with pytest.raises(ConfigError, match="experiment=bogus: no such experiment; valid: edit_demo"):
        check_optional_choices(compose([search, "experiment=bogus"], hydra=True).hydra)
    with pytest.raises(ConfigError, match="debug=smoek: no such debug"):  # the API checks as the CLI does
        evalrun.evaluate(["debug=smoek"], run_dir=tmp_path / "run")
    # A preset of your own may define keys the packaged presets do not: not a misspelling of theirs.
    (tmp_path / "model").mkdir()
    from evalrun.paths import CONF_DIR

    (tmp_path / "model" / "mine.yaml").write_text((CONF_DIR / "model" / "tiny.yaml").read_text() + "default_eta: 0.5\n")
    assert check_command_line([search, "model=mine", "model.default_eta=0.0"]) is None
    assert compose([search, "model=mine", "model.default_eta=0.0"]).model.default_eta == 0.0
    assert "did you mean model.default_steps" in check_command_line(["model.default_eta=0.0"])


def test_a_recompute_killed_in_place_never_reads_as_the_old_run_and_a_killed_dir_stays_its_configs(tmp_path,
                                                                                                     monkeypatch):
    """Inputs changed in place (same configuration) are recomputed in the same directory: the old run.json is
    withdrawn first, so a kill part-way leaves an unfinished run, never the old record over new files. A
    directory whose run was killed belongs to its configuration: another one is refused there."""
    import evalrun.generate
    from evalrun.errors import EvalrunError
    from evalrun.runs import read_run

    prompts, run_dir = tmp_path / "p.txt", tmp_path / "run"
    common = ("prompts=file", f"prompts.path={prompts}", "metrics=[]", "paths.image_store=none")
    prompts.write_text("a red cube\n")
    run_inprocess(*common, run_dir=run_dir)
    prompts.write_text("a blue sphere\n")  # the store is off: the changed prompt has to be sampled
    real_sample = evalrun.generate.sample

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill while sampling the changed prompt

    monkeypatch.setattr(evalrun.generate, "sample", killed)
    with pytest.raises(KeyboardInterrupt):
        run_inprocess(*common, run_dir=run_dir)
    assert read_run(run_dir) is None and not (run_dir / "run.json").exists()
    with pytest.raises(EvalrunError, match=r"holds the results of another configuration \(\.config_key\)"):
        run_inprocess(*common, "steps=2", run_dir=run_dir)
    monkeypatch.setattr(evalrun.generate, "sample", real_sample)
    prompts.write_text("a red cube\n")  # back to the first inputs: computed again, not served from the old files
    record = run_inprocess(*common, run_dir=run_dir)
    assert pd.read_csv(run_dir / "per_image.csv")["prompt"].tolist() == ["a red cube"]
    assert record["provenance"]["images"]["sampled"] + record["provenance"]["images"]["reused"] == 1


def test_messages_name_what_is_wrong_with_a_file(tmp_path):
    (tmp_path / "no_images").mkdir()
    (tmp_path / "no_images" / "notes.txt").write_text("x")
    assert "has no images (.bmp, .gif" in error_of("metrics=[kid]", "reference=folder",
                                                   f"reference.path={tmp_path / 'no_images'}", run_dir=tmp_path / "e")
    text = tmp_path / "stats.npz"
    text.write_text("not numpy")
    assert "stats.npz: not an .npz file" in error_of("metrics=[fid]", "reference=npz", f"reference.path={text}",
                                                     "metrics.fid.feature_extractor_weights_path=evalrun/tiny-inception",
                                                     run_dir=tmp_path / "a")
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    assert "model_index.json names no scheduler component" in error_of(
        "model=custom", f"model.path={folder}", "model.pipeline=StableDiffusionPipeline", run_dir=tmp_path / "b")
    assert "set reference.path=FILE.npz, the ADM evaluator's reference batch" in error_of(
        "protocol=adm", "model=tiny_dit", "prompts=classes", run_dir=tmp_path / "c")


def test_an_experiments_sweep_run_without_multirun_says_so(tmp_path):
    proc = cli("experiment=smoke_sweep", "prompts.limit=1", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 0
    log_text = (tmp_path / "evalrun.log").read_text()
    assert "this config sweeps scheduler=ddim,dpm, seed=0,1 (hydra.sweeper.params); without -m only one run" in log_text


def test_only_an_experiments_sweep_is_named_for_a_single_run():
    """debug=smoke sets sweeper params to shrink an experiment's sweep: a smoke run of one model is not a
    sweep run without -m; an experiment file's sweep is, with or without debug=smoke."""
    from evalrun.__main__ import experiment_sweep
    from evalrun.composition import compose as evalrun_compose

    assert experiment_sweep(evalrun_compose(["debug=smoke"], hydra=True).hydra) is None
    assert experiment_sweep(evalrun_compose(["experiment=smoke_sweep"], hydra=True).hydra) == \
        "scheduler=ddim,dpm, seed=0,1"
    assert experiment_sweep(evalrun_compose(["experiment=scheduler_comparison", "debug=smoke"], hydra=True).hydra) \
        == "scheduler=ddim,dpm,euler_a,unipc, steps=2,3, seed=0"


def test_a_failure_of_an_earlier_sweep_into_the_same_dir_does_not_fail_this_one(tmp_path):
    """A sweep re-run into a dir where an earlier sweep's job failed (and is not part of this sweep) exits 0,
    saying so; a job that fails during this sweep still fails it."""
    import os
    import time

    from evalrun.callbacks import SummaryCallback

    job = tmp_path / "steps=0-abc"
    job.mkdir()
    (job / "failed.json").write_text('{"status": "failed", "error": "ConfigError: steps must be positive"}')
    os.utime(job / "failed.json", (time.time() - 3600, time.time() - 3600))
    callback = SummaryCallback()
    callback.on_multirun_start(None)
    assert not callback._failed_now(tmp_path)
    (job / "failed.json").touch()  # failed again during this sweep
    assert callback._failed_now(tmp_path)


def test_debug_smoke_shrinks_an_experiments_sweep_and_makes_none_of_its_own():
    """debug=smoke's sweeper params (one seed, steps 2 and 3) apply to an experiment's sweep; without one,
    `scheduler=ddim,dpm debug=smoke -m` stays two jobs (it was four: steps 2 and 3 added)."""
    from evalrun.__main__ import sweep_params
    from evalrun.api import sweep_jobs
    from evalrun.composition import compose

    alone = sweep_params(compose(["debug=smoke"], hydra=True).hydra)
    assert alone == {} and len(sweep_jobs(alone, ["scheduler=ddim,dpm"])) == 2
    shrunk = sweep_params(compose(["experiment=smoke_sweep", "debug=smoke"], hydra=True).hydra)
    assert shrunk["seed"] == "0" and shrunk["steps"] == "2,3"
    assert sweep_params(compose(["debug=smoke", 'hydra.sweeper.params.seed="0,1"'], hydra=True).hydra) == {"seed": "0,1"}


def test_a_sweep_whose_every_job_failed_says_so_not_to_re_run_the_summary(tmp_path, caplog):
    from omegaconf import OmegaConf

    from evalrun.callbacks import SummaryCallback
    from report_synthetic import make_failed

    for seed in (0, 1):
        make_failed(tmp_path / f"seed={seed}", "ConfigError: prompt set 'file' (empty.txt) is empty")
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as stop:
        SummaryCallback().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    assert stop.value.code == 1
    assert f"no job of this sweep finished: nothing to summarise (each one's error is in {tmp_path}" in caplog.text
    assert "re-run: python -m evalrun.aggregate" not in caplog.text


def test_the_end_of_sweep_report_is_rebuilt_when_its_files_are_gone_not_only_when_runs_change(tmp_path, caplog):
    """A re-run of a finished sweep skips the report it would build again, unless the report's own files
    were removed or edited since; a damaged metrics.csv leaves its run out with a warning, not a traceback."""
    from evalrun.callbacks import SummaryCallback
    from report_synthetic import make_sweep

    make_sweep(tmp_path, steps=(2,))
    report = tmp_path / "report"
    with caplog.at_level(logging.INFO):
        SummaryCallback._report(tmp_path)
        assert (report / "report.md").exists() and "up to date" not in caplog.text
        SummaryCallback._report(tmp_path)
        assert "up to date (no run changed)" in caplog.text
        caplog.clear()
        (report / "report.md").unlink()
        SummaryCallback._report(tmp_path)
        assert (report / "report.md").exists() and "up to date" not in caplog.text
    damaged = sorted(tmp_path.glob("*/metrics.csv"))[0]
    damaged.write_text("")
    from evalrun.runs import read_run

    with caplog.at_level(logging.WARNING):
        assert read_run(damaged.parent) is None
    assert f"{damaged} is unreadable" in caplog.text and "delete" in caplog.text


def test_a_weights_variant_is_a_config_column():
    """model.variant=fp16 loads other files of the same folder (model_weights_sha256 hashes them all): runs
    with and without it were one configuration, and the summary dropped one as a repeat."""
    import torch

    from conftest import compose
    from evalrun.columns import config_columns
    from evalrun.tasks import get_task

    def columns(*overrides):
        return config_columns(compose(*overrides), get_task("text2img"), {}, {"class": "PNDMScheduler"},
                              torch.device("cpu"), torch.float32)

    assert columns("model.variant=fp16")["model_variant"] == "fp16" and "model_variant" not in columns()


def test_ctrl_c_is_one_line_that_says_how_to_resume(monkeypatch, capsys):
    """Ctrl-C printed ~120 lines of torch's and diffusers' stack (exit 130) and no word on resuming."""
    import sys

    import evalrun.__main__ as entry

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(entry, "main", interrupted)
    monkeypatch.setattr(sys, "argv", ["evalrun", "prompts.limit=2"])
    with pytest.raises(SystemExit) as stopped:
        entry.cli()
    assert stopped.value.code == 130
    assert capsys.readouterr().err.strip() == ("evalrun: interrupted; every finished image and run is kept: run the "
                                               "same command again to resume")


def test_the_hub_deprecation_warning_before_each_model_load_is_quieted():
    """diffusers passes huggingface_hub a deprecated argument: two lines before every real model's load."""
    import warnings

    from evalrun.console import quiet_libraries

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_libraries()
        warnings.warn("The `local_dir_use_symlinks` argument is deprecated and ignored in `hf_hub_download`.",
                      UserWarning)
        warnings.warn("another library warning", UserWarning)
    assert [str(w.message) for w in caught] == ["another library warning"]


def test_a_sweep_without_the_summary_callback_fails_in_one_line_not_a_traceback(tmp_path):
    """~hydra.callbacks.summary: the sweeper re-raised the first job's ConfigError, and Hydra printed its stack."""
    done = cli("~hydra.callbacks.summary", "prompts=file", f"prompts.path={tmp_path / 'none.txt'}", "seed=0,1",
               "metrics=[]", "steps=2", f"hydra.sweep.dir={tmp_path / 's'}", "-m", check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (f"evalrun: error: 2 of 2 job(s) failed; each said why above (first: "
                                                    f"prompts.path='{tmp_path / 'none.txt'}' does not exist)")
