"""The Python API and scoring images made elsewhere: the same numbers and directories as the CLI."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

import evalrun  # noqa: E402
import inception_weights as iw  # noqa: E402


def test_evaluate_returns_the_run_and_its_tables(tmp_path):
    result = evalrun.evaluate(["prompts.limit=2"], run_dir=tmp_path / "run")
    assert result.run_dir == tmp_path / "run" and (result.run_dir / "run.json").exists()
    assert result.metrics["clip_score"].iloc[0] == pytest.approx(result.values["clip_score"], rel=1e-12)
    assert len(result.per_image) == 2


def test_sweep_equals_the_cli_sweep(smoke_sweep, tmp_path, monkeypatch):
    """The API sweep, with the GPU path forced on (PNGs on writer threads, each run's files on the results
    thread while the next run samples), equals the CLI sweep, which wrote everything in line."""
    import threading

    from evalrun import outputs

    writers = set()
    write_files = outputs._write_files

    def recorded(*args):
        writers.add(threading.current_thread().name.split("_")[0])
        return write_files(*args)

    from evalrun import checked

    validated = []  # each job's config is checked once: by the sweep's pre-check, which hands its findings to the run
    validate = checked.validate
    monkeypatch.setattr(checked, "validate", lambda cfg: validated.append(cfg.seed) or validate(cfg))
    monkeypatch.setattr(outputs, "overlaps_sampling", lambda device: True)
    monkeypatch.setattr(outputs, "_write_files", recorded)
    api = evalrun.sweep(["experiment=smoke_sweep"], sweep_dir=tmp_path / "sweep")
    assert writers == {"evalrun-results"}
    assert len(validated) == 4
    cli = evalrun.load_sweep(smoke_sweep)
    assert sorted(p.parent.name for p in api.sweep_dir.glob("*/run.json")) == \
        sorted(p.parent.name for p in smoke_sweep.glob("*/run.json"))  # the CLI's job dir names
    cols = ["scheduler", "clip_score_mean", "clip_score_std", "clip_score_n", "seeds"]
    pd.testing.assert_frame_equal(api.summary[cols].sort_values("scheduler").reset_index(drop=True),
                                  cli.summary[cols].sort_values("scheduler").reset_index(drop=True), check_exact=True)
    assert len(api.runs) == 4
    for run_json in api.sweep_dir.glob("*/run.json"):  # every image on disk and listed, as the CLI's
        twin = smoke_sweep / run_json.parent.name
        for png in (twin / "images").glob("*.png"):  # pixels (a PNG's text chunk holds its sampling time)
            np.testing.assert_array_equal(np.asarray(Image.open(run_json.parent / "images" / png.name)),
                                          np.asarray(Image.open(png)))
        assert len((run_json.parent / "images" / "manifest.jsonl").read_text().splitlines()) == 3


def test_each_job_of_an_api_sweep_runs_with_its_own_cache(tmp_path, monkeypatch):
    """The pre-check of every job points the cache at each job's in turn; each run points it at its own again."""
    from evalrun import run as run_module

    seen = []

    def stop(cfg, *args):
        seen.append((os.environ["EVALRUN_CACHE"], str(cfg.paths.cache_dir)))
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "_compute", stop)
    monkeypatch.setenv("EVALRUN_CACHE", os.environ.get("EVALRUN_CACHE", ""))
    with pytest.raises(KeyboardInterrupt):
        evalrun.sweep([f"paths.cache_dir={tmp_path / 'a'},{tmp_path / 'b'}", "steps=2", "prompts.limit=1"],
                      sweep_dir=tmp_path / "sweep")
    assert seen == [(str(tmp_path / "a"), str(tmp_path / "a"))]


def test_api_mistakes_are_one_line(tmp_path):
    """A string where a list of overrides goes (Hydra read it a character at a time), and a sweep dir that is
    not one (an empty .runs, then a FileNotFoundError from .summary)."""
    from evalrun.errors import ConfigError

    for call in (lambda: evalrun.evaluate("debug=smoke"), lambda: evalrun.sweep("seed=0,1"),
                 lambda: evalrun.compose(["seed=1", 2])):
        with pytest.raises(ConfigError, match=r"overrides must be a list of strings.*got ('debug=smoke'|'seed=0,1'|"
                                              r"\['seed=1', 2\])"):
            call()
    (tmp_path / "file").write_text("")
    for path, problem in ((tmp_path / "nope", "does not exist"), (tmp_path / "file", "is a file"),
                          (tmp_path, "holds no runs")):
        with pytest.raises(ConfigError, match=problem):
            evalrun.load_sweep(path)
    for item in ("hydra.sweep.dir=/tmp/elsewhere", "hydra/launcher=evalrun_joblib"):  # silently not applied before
        with pytest.raises(ConfigError, match=rf"^{item}: the Python API does not run Hydra's app, so hydra.\* "
                                              rf"settings other than hydra.searchpath and hydra.sweeper.params"):
            evalrun.sweep([item, "seed=0,1"], sweep_dir=tmp_path / "s")
    # Hydra's own refusals (a key not in its config, an override it cannot parse): one line with its advice,
    # an evalrun ConfigError (they were Hydra's multi-line exceptions).
    for call, expected in ((lambda: evalrun.sweep(["hydra.sweeper.params.seed=0,1"], sweep_dir=tmp_path / "s"),
                            r"^Could not override 'hydra.sweeper.params.seed'. To append to your config use \+"),
                           (lambda: evalrun.evaluate(["model.path=[a"], run_dir=tmp_path / "r"),
                            r"^model.path=\[a: Hydra cannot read this value \(no viable alternative at input '\[a'\); "
                            r"quote it, e.g. model.path='\[a'$")):
        with pytest.raises(ConfigError, match=expected) as refused:
            call()
        assert "\n" not in str(refused.value)


def test_an_api_sweep_runs_every_job_and_summarises_the_others_when_one_fails(tmp_path, monkeypatch):
    """As the CLI: a job that fails at run time is recorded (failed_runs.csv), the later jobs still run, the
    summary holds them, and the sweep then fails in one line (it stopped at the failing job, no summary)."""
    import pandas as pd

    import evalrun.run
    from evalrun.errors import EvalrunError

    real = evalrun.run._compute

    def failing(cfg, *args, **kwargs):
        if int(cfg.seed) == 1:
            raise OSError("disk full")  # a failure no check can foresee
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(evalrun.run, "_compute", failing)
    with pytest.raises(EvalrunError, match=r"^1 of 3 job\(s\) failed \(listed in .*failed_runs.csv\)"):
        evalrun.sweep(["seed=0,1,2", "prompts.limit=1", "steps=2", "metrics=[]", "paths.image_store=none"],
                      sweep_dir=tmp_path / "s")
    assert pd.read_csv(tmp_path / "s" / "summary.csv")["seeds"].tolist() == ["0 2"]
    failed = pd.read_csv(tmp_path / "s" / "failed_runs.csv")
    assert len(failed) == 1 and "seed=1" in failed["run_dir"][0] and failed["error"][0] == "OSError: disk full"


def test_an_api_sweep_whose_every_job_failed_says_so_and_names_jobs_as_the_cli(tmp_path, monkeypatch):
    """Every job failing is one line pointing at failed_runs.csv (was FileNotFoundError from the summary);
    job dirs leave hydra.* overrides out of their names, as Hydra's override_dirname does."""
    import pandas as pd

    import evalrun.run
    from evalrun.errors import EvalrunError

    def failing(cfg, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(evalrun.run, "_compute", failing)
    (tmp_path / "conf").mkdir()
    with pytest.raises(EvalrunError, match=r"^no job of this sweep finished: nothing to summarise \(each one's error "
                                           r"is in .*failed_runs.csv\)$"):
        evalrun.sweep(["seed=0,1", "prompts.limit=1", "steps=2", "metrics=[]", f"hydra.searchpath=[file://{tmp_path}/conf]"],
                      sweep_dir=tmp_path / "s")
    failed = pd.read_csv(tmp_path / "s" / "failed_runs.csv")
    assert len(failed) == 2 and set(failed["error"]) == {"OSError: disk full"}
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "s").iterdir() if p.is_dir()) == \
        ["seed=0,metrics=[],prompts.limit=1,steps=2", "seed=1,metrics=[],prompts.limit=1,steps=2"]


def test_api_calls_leave_the_notebook_as_it_was(tmp_path):
    """The caller's Hydra, global torch RNG and $EVALRUN_CACHE are theirs again after a call; a sweep value
    in evaluate() and overrides beside config= are refused; sharded jobs in evalrun.sweep are refused
    before any job runs (the CLI's sweep names their merge dir)."""
    import os

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from evalrun.errors import ConfigError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "mine.yaml").write_text("x: 1\n")
    with initialize_config_dir(config_dir=str(mine), version_base="1.3"):
        evalrun.compose(["steps=2"])
        assert hydra_compose("mine").x == 1  # GlobalHydra was cleared under the caller's feet
    cache = os.environ["EVALRUN_CACHE"]
    os.environ.pop("DIFFUSERS_VERBOSITY", None)  # a notebook's own settings, which a run quiets for its duration
    logging.getLogger("diffusers").setLevel(logging.WARNING)
    diffusers_level = logging.getLogger("diffusers").level
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    import warnings

    filters = list(warnings.filters)
    evalrun.evaluate(["prompts.limit=1", "steps=2", "metrics=[]", f"paths.cache_dir={tmp_path / 'c2'}"],
                     run_dir=tmp_path / "run")
    assert warnings.filters == filters  # the run's own filter of a library warning is taken back
    assert torch.equal(torch.rand(3), expected) and os.environ["EVALRUN_CACHE"] == cache
    assert "DIFFUSERS_VERBOSITY" not in os.environ and logging.getLogger("diffusers").level == diffusers_level
    # A sweep too: its checks, before the runs, pointed $EVALRUN_CACHE and quieted the libraries for good.
    evalrun.sweep(["prompts.limit=1", "steps=2", "metrics=[]", f"paths.cache_dir={tmp_path / 'c3'}", "seed=0,1"],
                  sweep_dir=tmp_path / "sweep")
    assert os.environ["EVALRUN_CACHE"] == cache and warnings.filters == filters
    assert "DIFFUSERS_VERBOSITY" not in os.environ and logging.getLogger("diffusers").level == diffusers_level
    with pytest.raises(ConfigError, match=r"^seed=0,1 is a sweep \(several values\): evaluate\(\) makes one run; use "
                                          r"evalrun.sweep"):
        evalrun.evaluate(["seed=0,1"])
    with pytest.raises(ConfigError, match=r"evaluate\(\) takes overrides or config=, not both"):
        evalrun.evaluate(["steps=3"], config=evalrun.compose(["steps=2"]))
    with pytest.raises(ConfigError, match=r"sharded jobs merge where the CLI's sweep names them; .* shard_merge_dir="):
        evalrun.sweep(["num_shards=2", "shard=0,1", "prompts.limit=2", "steps=2"], sweep_dir=tmp_path / "sharded")
    assert not (tmp_path / "sharded").exists()


def test_compute_before_any_update_is_one_line_for_every_metric(tmp_path):
    """It was an AttributeError from state update() makes (CLIP metrics, CMMD, KID, PRDC) or a silent NaN
    (preference scores)."""
    from evalrun.errors import EvalrunError
    from evalrun.metrics import create
    from evalrun.metrics.registry import METRICS

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ref.png")
    for name in sorted(METRICS):
        metric = create(name, reference=str(tmp_path))
        metric.update([], prompts=[])  # an empty batch adds nothing (was torch's "stack expects a non-empty" error)
        with pytest.raises(EvalrunError, match=rf"^{name}: no images yet; call update\(images, ...\) before compute"):
            metric.compute()


def test_metric_objects_name_their_keyword_arguments_in_errors(tmp_path):
    """The runner's messages name config keys (metrics.kid.subset_size, reference.path=); a metric made in
    Python names the keyword argument to change instead."""
    from evalrun.errors import ConfigError, EvalrunError
    from evalrun.metrics import CLIPScore, FID, KID

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ref.png")
    with pytest.raises(ConfigError, match=r"^subset_size must") as err:
        KID(reference=str(tmp_path), subset_size=0)
    assert "metrics.kid" not in str(err.value)
    with pytest.raises(ConfigError, match=r"kid needs a reference: pass reference=DIR"):
        KID()
    with pytest.raises(ConfigError, match=r"^seed must be null \(the run's seed\) or an integer from 0 to 2\*\*32 - 1"):
        KID(reference=str(tmp_path), seed=-1)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^device='cuda' but CUDA is not available here"):
            KID(reference=str(tmp_path), device="cuda")
    clip = CLIPScore(clip_model="evalrun/tiny-clip")
    with pytest.raises(EvalrunError) as err:
        clip.update(torch.zeros((1, 3, 8, 8), dtype=torch.uint8))  # no prompts
    assert "metrics.clip_score" not in str(err.value) and "text_key" in str(err.value)
    with pytest.raises(EvalrunError) as err:
        FID(reference=str(tmp_path / "nowhere")).update(torch.zeros((2, 3, 8, 8), dtype=torch.uint8))
    assert "reference.path" not in str(err.value) and "reference=" in str(err.value)


def test_metric_objects_take_numpy_numbers_and_refuse_what_is_not_finite(tmp_path):
    """numpy's ints and floats are numbers (a notebook's np.int64 batch size ran before the checks were typed);
    a number beyond float's range or NaN is refused in one line naming the argument."""
    from evalrun.errors import ConfigError
    from evalrun.metrics import CLIPScore, KID

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ref.png")
    assert CLIPScore(clip_model="evalrun/tiny-clip", batch_size=np.int64(8), scale=np.float32(50.0)).scale == 50.0
    kid = KID(reference=str(tmp_path), subset_size=np.int64(4), gamma=np.float64(0.5), coef=np.int32(0))
    assert (kid.subset_size, kid.gamma, kid.coef) == (4, 0.5, 0.0) and type(kid.subset_size) is int
    with pytest.raises(ConfigError, match=r"^coef must be a finite number, got 1000"):
        KID(reference=str(tmp_path), coef=10 ** 400)
    with pytest.raises(ConfigError, match=r"^gamma must be null \(1 / feature dim\) or a finite number > 0, got nan"):
        KID(reference=str(tmp_path), gamma=float("nan"))


def test_expand_is_hydras_product():
    from evalrun.api import expand

    jobs = expand(["scheduler=ddim,dpm", "seed=0,1,2", "prompts.limit=2"])
    assert len(jobs) == 6 and ["scheduler=dpm", "seed=2", "prompts.limit=2"] in jobs


def test_metric_objects_score_in_memory_images_like_a_run(tmp_path):
    from evalrun.metrics import create

    result = evalrun.evaluate(["prompts.limit=3"], run_dir=tmp_path / "run")
    per_image = result.per_image
    images = torch.stack([torch.from_numpy(np.asarray(Image.open(tmp_path / "run" / p).convert("RGB"))).permute(2, 0, 1)
                          for p in per_image["path"]])
    clip = create("clip_score", clip_model="evalrun/tiny-clip")
    clip.add(images, prompts=list(per_image["prompt"]))
    scores = clip.compute()
    np.testing.assert_allclose(scores.per_image["clip_score"], per_image["clip_score"], rtol=1e-6)
    assert scores.values["clip_score"] == pytest.approx(result.values["clip_score"], rel=1e-6)

    # torchmetrics style: a named metric, update() on images in memory, in two batches
    from evalrun.metrics import CLIPScore

    named = CLIPScore(clip_model="evalrun/tiny-clip")
    prompts = list(per_image["prompt"])
    named.update(images[:2], prompts=prompts[:2])
    named.update([Image.fromarray(images[2].permute(1, 2, 0).numpy())], prompts=prompts[2:])  # PIL images too
    np.testing.assert_allclose(named.compute().per_image["clip_score"], per_image["clip_score"], rtol=1e-6)

    # Arrays and tensors in either layout: the channel axis is the one of size 3.
    layouts = CLIPScore(clip_model="evalrun/tiny-clip")
    layouts.update(images[:1].numpy(), prompts=prompts[:1])                     # array, (N, 3, H, W)
    layouts.update(images[1:2].permute(0, 2, 3, 1).numpy(), prompts=prompts[1:2])  # array, (N, H, W, 3)
    layouts.update(images[2:].permute(0, 2, 3, 1), prompts=prompts[2:])          # tensor, (N, H, W, 3)
    np.testing.assert_allclose(layouts.compute().per_image["clip_score"], per_image["clip_score"], rtol=1e-6)

    # A pandas Series of prompts is read by position, not by its index labels (a reordered frame's column).
    reordered = per_image.iloc[::-1]
    by_series = CLIPScore(clip_model="evalrun/tiny-clip")
    by_series.update(images.flip(0), prompts=reordered["prompt"])
    np.testing.assert_allclose(by_series.compute().per_image["clip_score"], reordered["clip_score"], rtol=1e-6)


def test_folder_against_folder_fid_equals_torch_fidelity(tmp_path):
    torch_fidelity = pytest.importorskip("torch_fidelity")
    from evalrun.score import main

    generated = iw.save_pngs(iw.random_images(6, 32, seed=1), tmp_path / "generated")
    real = iw.save_pngs(iw.random_images(8, 32, seed=2), tmp_path / "real")
    weights = str(iw.weights_path())
    assert main([str(generated), "--reference", str(real), "--metrics", "fid,kid", "--out", str(tmp_path / "run"),
                 f"metrics.fid.feature_extractor_weights_path={weights}", "metrics.fid.feature_extractor_weights_sha256=any",
                 f"metrics.kid.feature_extractor_weights_path={weights}", "metrics.kid.feature_extractor_weights_sha256=any",
                 "metrics.kid.subset_size=4", "metrics.kid.subsets=5"]) == 0
    row = pd.read_csv(tmp_path / "run" / "metrics.csv").iloc[0]
    theirs = torch_fidelity.calculate_metrics(input1=str(generated), input2=str(real), fid=True, kid=True,
                                              kid_subsets=5, kid_subset_size=4, rng_seed=0, cuda=False, cache=False,
                                              verbose=False, feature_extractor_weights_path=weights)
    assert row["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert row["kid_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)
    assert row["task"] == "images" and "scheduler" not in row and row["n_images"] == 6


def test_a_table_of_images_with_prompts_categories_and_edit_pairs(tmp_path):
    from conftest import run_inprocess

    folder = tmp_path / "imgs"
    folder.mkdir()
    sizes = [(40, 24), (32, 32), (24, 48)]  # any size
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(np.full((h, w, 3), 60 * i, np.uint8)).save(folder / f"edited{i}.png")
        Image.fromarray(np.full((h, w), 90, np.uint8), "L").save(folder / f"input{i}.png")
    table = pd.DataFrame({"image": [f"imgs/edited{i}.png" for i in range(3)], "prompt": ["a", "b", "c"],
                          "category": ["x", "y", "x"], "input_image": [f"imgs/input{i}.png" for i in range(3)],
                          "input_caption": ["grey"] * 3, "output_caption": ["dark", "mid", "light"]})
    table.to_csv(tmp_path / "pairs.csv", index=False)
    record = run_inprocess("model=images", f"model.path={tmp_path / 'pairs.csv'}",
                           "metrics=[clip_score,clip_image_similarity]", "metrics.clip_score.clip_model=evalrun/tiny-clip",
                           "metrics.clip_image_similarity.clip_model=evalrun/tiny-clip", run_dir=tmp_path / "run")
    # An edit pair's CLIP score is against its output caption (its prompt is the instruction), as an edit run's.
    from evalrun.metrics import CLIPScore

    alone = CLIPScore(clip_model="evalrun/tiny-clip")
    alone.update([Image.open(folder / f"edited{i}.png") for i in range(3)], prompts=["dark", "mid", "light"])
    scored = pd.read_csv(tmp_path / "run" / "per_image.csv")["clip_score"].to_numpy()
    np.testing.assert_allclose(scored, alone.compute().per_image["clip_score"], rtol=1e-6)
    assert record["columns"]["clip_score"] and record["config"]["metrics"]["clip_score"]["text_key"] == "auto"
    # No pipeline, but scored with a random-weights CLIP: marked, so the report says the numbers mean nothing.
    assert record["provenance"]["random_weight_models"] == ["clip_score.clip_model", "clip_image_similarity.clip_model"]
    assert record["provenance"]["smoke_model_random_weights"] is True
    per_image = pd.read_csv(tmp_path / "run" / "per_image.csv")
    assert list(per_image["prompt"]) == ["a", "b", "c"] and list(per_image["category"]) == ["x", "y", "x"]
    assert per_image["clip_score"].notna().all() and per_image["clip_image_similarity"].between(-1, 1).all()
    assert sorted(p.name for p in (tmp_path / "run" / "images").iterdir()) == [f"0000{i}_00.png" for i in range(3)]
    # An input image replaced in place: the same table and seed, other pairs, so another configuration
    # (it was a repeat of the first, and the summary and report kept only the first).
    Image.fromarray(np.full((48, 24), 200, np.uint8), "L").save(folder / "input2.png")
    run_inprocess("model=images", f"model.path={tmp_path / 'pairs.csv'}", "metrics=[clip_score,clip_image_similarity]",
                  "metrics.clip_score.clip_model=evalrun/tiny-clip",
                  "metrics.clip_image_similarity.clip_model=evalrun/tiny-clip", run_dir=tmp_path / "run2")
    from evalrun.aggregate import write_summary

    # The same images at another seed: the same configuration, averaged over seeds (not a column per seed).
    run_inprocess("model=images", f"model.path={tmp_path / 'pairs.csv'}", "metrics=[clip_score,clip_image_similarity]",
                  "metrics.clip_score.clip_model=evalrun/tiny-clip", "seed=1",
                  "metrics.clip_image_similarity.clip_model=evalrun/tiny-clip", run_dir=tmp_path / "run3")
    first, second, third = (pd.read_csv(tmp_path / r / "metrics.csv").iloc[0] for r in ("run", "run2", "run3"))
    assert first["images_sha256"] != second["images_sha256"] and first["clip_score"] == second["clip_score"]
    assert third["images_sha256"] == second["images_sha256"]
    write_summary(tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv").set_index("images_sha256")
    assert sorted(summary.index) == sorted([first["images_sha256"], second["images_sha256"]])
    assert summary.loc[second["images_sha256"], "clip_score_n"] == 2


def test_scoring_existing_images_refuses_generation_knobs(tmp_path):
    from conftest import error_of

    assert "model=images needs model.path" in error_of("model=images", run_dir=tmp_path)
    assert "has no effect when scoring existing images" in error_of(
        "model=images", f"model.path={tmp_path}", "strength=0.5", run_dir=tmp_path)
    assert "holds no images" in error_of("model=images", f"model.path={tmp_path}", run_dir=tmp_path / "r")


def test_background_writes_finish_every_run_and_raise_the_first_error(monkeypatch, tmp_path):
    """evalrun.sweep writes a run's files on a background thread while the next run samples: leaving the
    block waits for all of them, and a failed write is raised there, not lost."""
    import threading
    import time

    from evalrun import outputs

    written = []

    def slow_write(run_dir, *rest):
        time.sleep(0.05)
        assert threading.current_thread().name.startswith("evalrun-results")
        if run_dir.name == "bad":
            raise OSError("disk full")
        written.append(run_dir.name)

    monkeypatch.setattr(outputs, "_write_files", slow_write)
    files = lambda name: (tmp_path / name, lambda: None, [], {}, {}, None, {})  # noqa: E731
    with outputs.background_writes():
        for name in "abc":
            outputs._background.submit(files(name))
        assert len(written) < 3  # the loop went on before the files were written
    assert written == ["a", "b", "c"] and outputs._background is None
    with pytest.raises(OSError, match="disk full"):
        with outputs.background_writes():
            outputs._background.submit(files("bad"))
            outputs._background.submit(files("d"))
    assert written[-1] == "d" and outputs._background is None


def _unusual_images(folder: Path) -> Path:
    """Four plain PNGs and one of each kind that a plain ``convert("RGB")`` reads wrong or a suffix list
    may miss: transparency over coloured pixels, 16-bit grayscale, an EXIF-rotated JPEG, a GIF."""
    iw.save_pngs(iw.random_images(4, 32, seed=3), folder)
    rng = np.random.default_rng(4)
    rgba = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    rgba[:16, :, 3] = 0  # transparent, with red under it
    rgba[:16, :, 0] = 255
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    Image.fromarray(rng.integers(0, 65536, (32, 32)).astype(np.uint16)).save(folder / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to show
    Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(folder / "turned.jpg", exif=exif)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "anim.gif")
    return folder


def test_a_folder_scored_against_itself_reads_every_file_alike_on_both_sides(tmp_path):
    from evalrun.reference.images import iter_images
    from evalrun.reference.spec import ReferenceSpec
    from evalrun.score import main
    from evalrun.tasks.images import read_rgb

    folder = _unusual_images(tmp_path / "mixed")
    spec = ReferenceSpec.from_config({"kind": "folder", "path": str(folder)}, "test")
    reference = [image.permute(1, 2, 0).numpy() for image in iter_images(spec, [])]
    scored = [read_rgb(p) for p in sorted(folder.iterdir())]
    assert len(reference) == len(scored) == 8
    assert all(np.array_equal(a, b) for a, b in zip(reference, scored))
    by_name = {p.name: image for p, image in zip(sorted(folder.iterdir()), scored)}
    assert by_name["alpha.png"][0, 0].tolist() == [255, 255, 255]  # white under transparency, not red
    assert by_name["deep.png"].max() > 200 and by_name["deep.png"].mean() < 200  # scaled from 16 bits, not clipped
    assert by_name["turned.jpg"].shape == (40, 24, 3)  # EXIF rotation applied
    weights = str(iw.weights_path())
    assert main([str(folder), "--reference", str(folder), "--metrics", "fid", "--out", str(tmp_path / "run"),
                 f"metrics.fid.feature_extractor_weights_path={weights}",
                 "metrics.fid.feature_extractor_weights_sha256=any"]) == 0
    row = pd.read_csv(tmp_path / "run" / "metrics.csv").iloc[0]
    assert row["n_images"] == 8 and abs(row["fid"]) < 1e-6


def test_score_takes_any_folder_name_and_answers_mistakes_in_one_line(tmp_path, capsys):
    from evalrun.score import main

    folder = tmp_path / "imgs,v2 [it's] x=y"
    iw.save_pngs(iw.random_images(3, 16, seed=5), folder)
    assert main([str(folder), "metrics.clip_score.clip_model=evalrun/tiny-clip", "--out", str(tmp_path / "run")]) == 0
    assert pd.read_csv(tmp_path / "run" / "metrics.csv")["model_path"][0] == str(folder)
    for argv, expected in ((["--metrics", "fidd"], "unknown metric(s) fidd; valid: "),
                           (["stpes=3"], "did you mean steps=3?"),
                           (["foo.bar.baz=1"], "Could not override 'foo.bar.baz'")):
        capsys.readouterr()
        assert main([str(folder), *argv, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("evalrun.score: error: ") and expected in err and err.count("\n") == 1, err
    # A file that is no image (macOS's ._ twin) is named before any metric model loads (this one does not exist).
    (folder / "._00001.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    assert main([str(folder), "metrics.clip_score.clip_model=/no/such/clip", "--out", str(tmp_path / "bad2")]) == 2
    err = capsys.readouterr().err
    assert "1 file(s) are not readable images, the first" in err and "._00001.png" in err and err.count("\n") == 1


def test_scoring_again_reuses_the_run_and_a_replaced_image_is_scored_and_kept_as_scored(tmp_path):
    """The scored files are copied into the run, not linked: a link moved their ctime, so the same command was
    computed twice, and scoring the folder elsewhere invalidated every finished run of it. A table is identified
    by the files it names, so an output folder beside it does not make it new. An image replaced by one of the
    same size is scored, and the run keeps that one (it kept the old file when the sizes matched)."""
    import os

    from evalrun.score import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    pixels = iw.random_images(3, 16, seed=8).permute(0, 2, 3, 1).numpy()
    for name, image in zip(("a_cat", "a_dog"), pixels):
        Image.fromarray(image).save(folder / f"{name}.bmp")  # BMP: the same size for any pixels
    table = tmp_path / "tbl" / "t.csv"
    table.parent.mkdir()
    pd.DataFrame({"image": ["../imgs/a_cat.bmp", "../imgs/a_dog.bmp"], "prompt": ["a cat", "a dog"]}).to_csv(
        table, index=False)
    clip = "metrics.clip_score.clip_model=evalrun/tiny-clip"

    def score(source: Path, out: Path) -> int:
        assert main([str(source), clip, "--out", str(out)]) == 0
        return (out / "run.json").stat().st_mtime_ns

    first = score(folder, tmp_path / "run")
    links = {p.name: p.stat().st_nlink for p in folder.iterdir()}
    assert score(folder, tmp_path / "run") == first  # reused
    score(folder, tmp_path / "elsewhere")
    table_run = score(table, table.parent / "run")  # its output beside it
    assert score(table, table.parent / "run") == table_run
    assert score(folder, tmp_path / "run") == first  # still reused: the other runs did not touch the inputs
    assert {p.name: p.stat().st_nlink for p in folder.iterdir()} == links
    old = (folder / "a_cat.bmp").read_bytes()
    copies = {p.read_bytes(): p.stat().st_ino for p in (tmp_path / "run" / "images").iterdir()}
    Image.fromarray(pixels[2]).save(tmp_path / "new.bmp")
    assert (tmp_path / "new.bmp").stat().st_size == len(old)
    os.replace(tmp_path / "new.bmp", folder / "a_cat.bmp")  # mv: same name and size, other pixels
    assert score(folder, tmp_path / "run") != first
    kept = [p.read_bytes() for p in (tmp_path / "run" / "images").iterdir()]
    assert (folder / "a_cat.bmp").read_bytes() in kept and old not in kept
    dog = (folder / "a_dog.bmp").read_bytes()  # unchanged: its copy was left in place, not written again
    assert next(p for p in (tmp_path / "run" / "images").iterdir() if p.read_bytes() == dog).stat().st_ino == copies[dog]


def test_same_bytes_reads_the_bytes_not_the_stamps(tmp_path):
    """A file replaced keeping its size and mtime (cp -p) is another file: compared by content, never by the
    (size, mtime) signature filecmp remembers."""
    import os

    from evalrun.images import same_bytes

    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x" * 3000)
    b.write_bytes(b"x" * 3000)
    assert same_bytes(a, b) and not same_bytes(a, tmp_path / "missing")
    stamp = b.stat().st_mtime_ns
    b.write_bytes(b"x" * 2999 + b"y")
    os.utime(b, ns=(stamp, stamp))
    assert not same_bytes(a, b)


def test_too_few_reference_images_and_broken_statistics_are_one_line(tmp_path, capsys):
    from evalrun.metrics.functional.fid import GaussianStats
    from evalrun.reference.npz import save_npz
    from evalrun.score import main

    scored = iw.save_pngs(iw.random_images(3, 16, seed=6), tmp_path / "scored")
    one = iw.save_pngs(iw.random_images(1, 16, seed=7), tmp_path / "one")
    (one / "broken.png").write_bytes(b"not a png")  # skipped as unreadable: one image left
    weights = [f"metrics.fid.feature_extractor_weights_path={iw.weights_path()}",
               "metrics.fid.feature_extractor_weights_sha256=any"]
    nan = tmp_path / "nan.npz"
    save_npz(nan, GaussianStats(np.full(2048, np.nan), np.eye(2048), 10), {})
    cases = (([str(scored), "--reference", str(one), "--metrics", "fid", *weights],
              "has 1 readable image(s); fid needs at least 2: add images to reference.path"),
             ([str(scored), "--reference", str(nan), "--metrics", "fid", *weights],
              "mu or sigma holds NaN or infinite values"),
             ([str(scored), "--metrics", "inception_score", *[w.replace("fid", "inception_score") for w in weights]],
              "needs at least 10 images but this run has 3; add images to model.path, lower its splits "
              "(metrics.inception_score.splits)"))
    for n, (argv, expected) in enumerate(cases):
        capsys.readouterr()
        assert main([*argv, "--out", str(tmp_path / f"run{n}")]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_in_memory_images_with_prompts_that_do_not_fit_are_refused_and_mixed_sizes_scored():
    from evalrun.metrics import CLIPScore

    rng = np.random.default_rng(8)
    arrays = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((16, 16, 3), (24, 16, 3), (16, 16, 3))]
    prompts = ["a red cube", "a blue ball", "a green hat"]
    metric = CLIPScore(clip_model="evalrun/tiny-clip")
    stacked = np.stack([arrays[0], arrays[2]])
    for call, expected in ((lambda: metric.update(stacked, prompts="a red cube"), "prompt must be a list"),
                           (lambda: metric.update(stacked, prompts=prompts), "prompt has 3 values for 2 images"),
                           (lambda: metric.update(stacked, prompts=prompts[:1]), "prompt has 1 values for 2 images"),
                           (lambda: metric.update(arrays[0], prompts=prompts[:1]), "add a batch axis")):
        with pytest.raises(ValueError, match=expected):
            call()
    metric.update([Image.fromarray(a) for a in arrays], prompts=prompts)  # three images, two sizes
    one_by_one = CLIPScore(clip_model="evalrun/tiny-clip")
    for a, p in zip(arrays, prompts):
        one_by_one.update(a[None], prompts=[p])
    np.testing.assert_allclose(metric.compute().per_image["clip_score"],
                               one_by_one.compute().per_image["clip_score"], rtol=1e-6)
    # Grayscale (H, W) and (H, W, 1) arrays in a list are made RGB as grayscale files are (they were stacked
    # into an (N, H, W) batch and told to "add a batch axis"); a grayscale batch gets the hint that fits it.
    gray = [a[..., 0] for a in (arrays[0], arrays[2])]
    listed, as_rgb = CLIPScore(clip_model="evalrun/tiny-clip"), CLIPScore(clip_model="evalrun/tiny-clip")
    listed.update([gray[0], gray[1][..., None]], prompts=prompts[:2])
    as_rgb.update(np.stack([np.repeat(g[..., None], 3, -1) for g in gray]), prompts=prompts[:2])
    assert listed.compute().values == as_rgb.compute().values
    with pytest.raises(ValueError, match=r"for grayscale \(N, H, W\) images, pass a list of them"):
        metric.update(np.stack(gray), prompts=prompts[:2])


def test_existing_edit_pairs_are_scored_as_the_guide_does_each_image_at_its_own_size(tmp_path, capsys):
    """CLIP's processor takes the input as it is: an input of another aspect ratio than its edit is not
    stretched first. Checked against transformers' CLIP on the same files."""
    from transformers import CLIPModel, CLIPProcessor

    from evalrun import tiny
    from evalrun.score import main

    rng = np.random.default_rng(9)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "input.png")
    Image.fromarray(rng.integers(0, 256, (80, 40, 3), dtype=np.uint8)).save(tmp_path / "edited.png")
    pd.DataFrame({"image": ["edited.png"], "prompt": ["make it a dog"], "input_image": ["input.png"],
                  "input_caption": ["a photo of a cat"], "output_caption": ["a photo of a dog"]}).to_csv(
        tmp_path / "pairs.csv", index=False)
    clip = ["metrics.clip_directional.clip_model=evalrun/tiny-clip"]
    assert main([str(tmp_path / "pairs.csv"), "--metrics", "clip_directional", *clip, "--out", str(tmp_path / "run")]) == 0
    found = pd.read_csv(tmp_path / "run" / "per_image.csv")["clip_directional"][0]

    folder = tiny.resolve("evalrun/tiny-clip")
    model, processor = CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder)

    def image_embedding(name: str):
        pixels = processor.image_processor(images=[np.asarray(Image.open(tmp_path / name))], return_tensors="pt")
        found = model.visual_projection(model.vision_model(pixel_values=pixels["pixel_values"]).pooler_output)
        return found.double()[0] / found.double()[0].norm()

    def text_embedding(text: str):
        tokens = processor.tokenizer([text], return_tensors="pt")
        found = model.text_projection(model.text_model(**tokens).pooler_output)
        return found.double()[0] / found.double()[0].norm()

    with torch.no_grad():
        image = [image_embedding(name) for name in ("input.png", "edited.png")]
        text = [text_embedding(t) for t in ("a photo of a cat", "a photo of a dog")]
    expected = torch.nn.functional.cosine_similarity(image[1] - image[0], text[1] - text[0], dim=0).item()
    assert found == pytest.approx(expected, abs=1e-5)

    # A table's mistakes: a missing or unreadable input image and a seed that is not an integer, one line each.
    (tmp_path / "notes.png").write_text("not an image")
    for column, value, message in (("input_image", "nope.png", "input image file"), ("seed", 1.7, "seed='1.7' is not"),
                                   ("input_image", "notes.png", "row 0: 'input_image' file"),
                                   ("image", "notes.png", "row 0: 'image' file")):
        bad = pd.read_csv(tmp_path / "pairs.csv").assign(**{column: [value]})
        bad.to_csv(tmp_path / "bad.csv", index=False)
        capsys.readouterr()
        assert main([str(tmp_path / "bad.csv"), "--metrics", "clip_directional", *clip,
                     "--out", str(tmp_path / f"bad_{column}_{value}")]) == 2
        assert message in capsys.readouterr().err


def test_a_sweep_with_a_bad_job_is_refused_or_named_before_any_job_runs(tmp_path):
    """The API refuses it before any job samples; the CLI names each bad job at the start and runs the others
    (a models x samplers sweep runs the pairs that fit)."""
    from conftest import cli
    from evalrun.errors import ConfigError

    with pytest.raises(ConfigError, match=r"job scheduler=flow_euler .*no job of the sweep was started"):
        evalrun.sweep(["scheduler=ddim,flow_euler", "steps=2", "prompts.limit=1"], sweep_dir=tmp_path / "api")
    with pytest.raises(ConfigError, match=r"job .*steps=0.*steps must be a positive integer"):
        evalrun.sweep(["steps=2,0", "prompts.limit=1"], sweep_dir=tmp_path / "api")
    assert not (tmp_path / "api").exists()
    proc = cli("scheduler=ddim,flow_euler", "seed=0,1", "steps=1", "prompts.limit=1",
               f"hydra.sweep.dir={tmp_path / 'cli'}", "-m", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    # One problem, said once with the jobs that have it (a missing model printed one line per job of a sweep).
    assert lines[0].startswith("evalrun: warning: 2 jobs (scheduler=flow_euler seed=0 ") and "will fail: " in lines[0]
    assert lines[1] == "evalrun: warning: 2 of 4 jobs will fail (listed in failed_runs.csv at the end)"
    assert len(pd.read_csv(tmp_path / "cli" / "summary.csv")) == 1  # the ddim jobs ran
    assert pd.read_csv(tmp_path / "cli" / "failed_runs.csv")["run_dir"].str.contains("flow_euler").tolist() == [True] * 2
    assert "2 job(s) failed (listed in " in proc.stdout + proc.stderr and "): 2 jobs (" in proc.stdout + proc.stderr


def test_scoring_a_runs_images_folder_reads_its_prompts(tmp_path):
    from evalrun.score import main

    clip = ["metrics.clip_score.clip_model=evalrun/tiny-clip", "metrics.diversity.clip_model=evalrun/tiny-clip"]
    run = evalrun.evaluate(["prompts.limit=2", "num_images_per_prompt=2", "metrics=[clip_score,diversity]", *clip],
                           run_dir=tmp_path / "run")
    assert main([str(tmp_path / "run" / "images"), "--metrics", "clip_score,diversity", *clip,
                 "--out", str(tmp_path / "scored")]) == 0
    scored = pd.read_csv(tmp_path / "scored" / "per_image.csv")
    assert scored["prompt"].tolist() == run.per_image["prompt"].tolist()  # not the file names "00000 00"
    assert scored["clip_score"].to_numpy() == pytest.approx(run.per_image["clip_score"].to_numpy(), rel=1e-6)
    for column in ("prompt_id", "image_index"):  # the run's numbering: diversity groups the images of a prompt
        assert scored[column].tolist() == run.per_image[column].tolist()
    values = pd.read_csv(tmp_path / "scored" / "metrics.csv").iloc[0]
    assert values["diversity_groups"] == 2
    assert values["diversity_vendi"] == pytest.approx(run.values["diversity_vendi"], rel=1e-6)
    # The prompts come from the run's images.csv: a change there (same images) is another input, not a reuse.
    from evalrun.keys import input_identities

    cfg = evalrun.compose(["model=images", f"model.path={tmp_path / 'run' / 'images'}"])
    before = input_identities(cfg)
    listing = (tmp_path / "run" / "images.csv").read_text()
    (tmp_path / "run" / "images.csv").write_text(listing.replace(run.per_image["prompt"][0], "another prompt"))
    assert input_identities(cfg)["model_records"] != before["model_records"]
    (tmp_path / "run" / "images.csv").write_text(listing)

    # A table whose rows repeat prompts: the rows of one prompt are its images, as in a run
    rows = run.per_image.assign(image=[str(tmp_path / "run" / p) for p in run.per_image["path"]])
    rows[["image", "prompt"]].iloc[::-1].to_json(tmp_path / "table.jsonl", orient="records", lines=True)
    assert main([str(tmp_path / "table.jsonl"), "--metrics", "diversity", *clip[1:], "--out",
                 str(tmp_path / "table")]) == 0
    values = pd.read_csv(tmp_path / "table" / "metrics.csv").iloc[0]
    assert values["diversity_groups"] == 2
    assert values["diversity_vendi"] == pytest.approx(run.values["diversity_vendi"], rel=1e-6)
    table = pd.read_csv(tmp_path / "table" / "per_image.csv")
    assert table["prompt_id"].tolist() == [0, 0, 1, 1] and table["image_index"].tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("mode, key", [("RGB", (0, 0, 0)), ("L", 0), ("I;16", 0)])
def test_a_colour_key_transparency_is_composited_on_white(tmp_path, mode, key):
    """A PNG's tRNS colour key on an RGB, L or 16-bit grayscale image (not only a palette's) marks transparent
    pixels: white, as every other transparency, not the black that convert("RGB") shows (the 16-bit image
    lost its key when scaled to 8 bits)."""
    from evalrun.images import to_rgb

    pixels = np.zeros((8, 8, 3) if mode == "RGB" else (8, 8), np.uint16 if mode == "I;16" else np.uint8)
    pixels[:4] = 120 * 257 if mode == "I;16" else 120  # opaque top half
    (Image.fromarray(pixels) if mode == "I;16" else Image.fromarray(pixels, mode)).save(tmp_path / "keyed.png",
                                                                                       transparency=key)
    with Image.open(tmp_path / "keyed.png") as im:
        assert im.mode == mode
        rgb = np.asarray(to_rgb(im))
    assert rgb[7, 0].tolist() == [255, 255, 255] and rgb[0, 0].tolist() == [120, 120, 120]


def test_in_memory_images_of_the_same_bytes_and_another_shape_are_other_images():
    """The in-memory feature memo is keyed by pixel hash: it must include the shape (as a run's does), or
    (1, 3, 32, 48) and the same bytes as (1, 3, 48, 32) shared one embedding."""
    import torch

    from evalrun.images import pixel_hash
    from evalrun.metrics.base import ImageBatch

    wide = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, 32, 48), dtype=np.uint8))
    tall = wide.reshape(1, 3, 48, 32)
    records = [{"prompt": "a red cube"}]
    a, b = ImageBatch(wide, records), ImageBatch(tall, records)
    assert a.hashes != b.hashes and a.key != b.key
    assert a.hashes == [pixel_hash(wide[0].permute(1, 2, 0).numpy())]  # the key a run gives the same image


def test_edit_metrics_take_input_images_in_memory_as_pil_arrays_or_tensors():
    """README's in-memory forms hold for an edit's input_image too: PIL (through the same RGB conversion, so
    transparency is white), (H, W, 3) arrays and (3, H, W) tensors give one number (PIL and arrays were refused)."""
    from evalrun.metrics import create

    rng = np.random.default_rng(7)
    edited = torch.from_numpy(rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8))
    inputs = torch.from_numpy(rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8))
    forms = {"tensor": list(inputs), "array": [x.permute(1, 2, 0).numpy() for x in inputs],
             "pil": [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in inputs]}
    scores = {}
    for form, values in forms.items():
        metric = create("clip_image_similarity", clip_model="evalrun/tiny-clip")
        metric.add(edited, prompts=["make it red", "make it blue"], input_image=values)
        scores[form] = metric.compute().per_image["clip_image_similarity"]
    np.testing.assert_array_equal(scores["array"], scores["tensor"])
    np.testing.assert_array_equal(scores["pil"], scores["tensor"])


def test_random_weight_models_names_each_tiny_model_and_nothing_else(tmp_path):
    from types import SimpleNamespace

    from evalrun import tiny
    from evalrun.outputs import random_weight_models

    saved = tmp_path / "my-clip"  # a user's folder: no tiny builder's marker
    saved.mkdir()
    built = Path(tiny.resolve("evalrun/tiny-clip"))  # a tiny builder's folder, named by its path
    settings = {"clip_score": {"clip_model": str(saved), "scale": 100.0}, "pick_score": {"model": str(built)},
                "fid": {"weights": "/w/pt_inception.pth"}}
    results = {"fid": SimpleNamespace(info={"extractor": {"weights": {"random_weights": True}}}),
               "clip_score": SimpleNamespace(info={})}
    assert random_weight_models({"random_weights": False}, settings, results) == ["pick_score.model", "fid"]
    assert random_weight_models({"random_weights": True}, {"clip_score": settings["clip_score"]}, {}) == ["pipeline"]
    assert random_weight_models({}, {"clip_score": settings["clip_score"]}, {}) == []
