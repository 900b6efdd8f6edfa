"""Class-conditional (tiny DiT) and unconditional (tiny DDPM) runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import cli, compose, run_inprocess
from evalrun.errors import ConfigError, EvalrunError
from evalrun.generate import sample
from evalrun.jobs import image_jobs
from evalrun.pipelines import load_pipeline
from evalrun.prompts import load_prompts
from evalrun.tasks import get_task


class Loaded:
    """What a task's prepare step is given: the pipeline class, and the pipeline on demand."""

    def __init__(self, pipe):
        self.pipe, self.cls = pipe, type(pipe)

    def get(self):
        return self.pipe


def _dit():
    return load_pipeline(compose("model=tiny_dit").model, torch.device("cpu"), torch.float32)


def test_class_words_map_through_get_label_ids_and_random_is_seeded():
    pipe, task, dit = _dit(), get_task("class2img"), compose("model=tiny_dit")
    words = task.prepare(Loaded(pipe), load_prompts(compose("model=tiny_dit", "prompts=classes").prompts), dit)
    assert [r["class_id"] for r in words] == pipe.get_label_ids([r["prompt"] for r in words])
    assert words[0]["prompt"] == "golden retriever" and words[0]["class_id"] == 207
    rand = compose("prompts=classes", "prompts.words=null", "prompts.random=5", "prompts.random_seed=1").prompts
    a, b = load_prompts(rand), load_prompts(rand)
    assert a == b and len({r["class_id"] for r in a}) == 5
    expected = sorted(np.random.default_rng(1).choice(1000, 5, replace=False))
    assert [r["class_id"] for r in a] == expected
    named = task.prepare(Loaded(pipe), a, dit)
    assert all(r["prompt"] for r in named)  # ids got readable words from the checkpoint's id2label
    # The first word as id2label lists it ("tench, Tinca tinca"), not the pipeline's alphabetically first (Latin)
    first = task.prepare(Loaded(pipe), load_prompts(compose("prompts=classes", "prompts.words=null",
                                                            "prompts.all=true", "prompts.limit=2").prompts), dit)
    assert [r["prompt"] for r in first] == ["tench", "goldfish"]
    beyond = [{"prompt_id": 1000, "prompt": None, "class_id": 1000}]  # DiT's null class, or past a smaller model
    with pytest.raises(EvalrunError, match=r"class id 1000 is not a class of this model \(1000 classes, 0..999\); "
                                           r"set prompts.num_classes=1000"):
        task.prepare(Loaded(pipe), beyond, dit)
    every = load_prompts(compose("prompts=classes", "prompts.words=null", "prompts.all=true").prompts)
    assert [r["class_id"] for r in every] == list(range(1000))
    with pytest.raises(ConfigError, match=r"prompts.random=3 and prompts.words=\['golden retriever'.* both choose the "
                                          r"classes; add prompts.words=null to use prompts.random=3"):
        load_prompts(compose("prompts=classes", "prompts.random=3").prompts)
    one = load_prompts(compose("prompts=classes", "prompts.words=volcano").prompts)  # a scalar: one class
    assert [r["prompt"] for r in one] == ["volcano"]
    with pytest.raises(EvalrunError, match="'golden retrievr' is not a class word"):
        task.prepare(Loaded(pipe), [{"prompt_id": 0, "prompt": "golden retrievr"}], dit)
    # synonyms are one class: its noise comes from its id, so they would be the same samples twice
    synonyms = [{"prompt_id": i, "prompt": w} for i, w in enumerate(("tabby", "golden retriever", "tabby cat"))]
    with pytest.raises(EvalrunError, match="'tabby' and 'tabby cat' are both class 281"):
        task.prepare(Loaded(pipe), synonyms, dit)


@pytest.mark.parametrize("model, task, params", [
    ("tiny_dit", "class2img", {"steps": 3, "guidance_scale": 4.0}),
    ("tiny_ddpm", "unconditional", {"steps": 3}),
])
def test_batch_size_does_not_change_images(model, task, params):
    cfg = compose(f"model={model}", "prompts=classes")
    pipe = load_pipeline(cfg.model, torch.device("cpu"), torch.float32)
    records = [{"prompt_id": i, "prompt": "", "class_id": c} for i, c in enumerate([207, 281, 980, 0, 1])]
    jobs, task = image_jobs(records, 1, seed=3), get_task(task)
    one = np.concatenate([sample(pipe, task, [j], params) for j in jobs])
    four = np.concatenate([sample(pipe, task, jobs[i:i + 4], params) for i in (0, 4)])
    np.testing.assert_allclose(one, four, atol=1e-5, rtol=0)
    assert np.abs(one[0] - one[1]).max() > 1e-3


def test_a_stochastic_scheduler_that_dit_calls_without_generators_still_repeats():
    """DiT's loop calls scheduler.step without the generators, so DDPM's noise comes from torch's
    global RNG: sample() seeds it from the batch's first image, whatever was drawn before."""
    import diffusers

    pipe = _dit()
    pipe.scheduler = diffusers.DDPMScheduler.from_config(pipe.scheduler.config)
    records = [{"prompt_id": 0, "prompt": "", "class_id": 207}]
    task, params = get_task("class2img"), {"steps": 3, "guidance_scale": 4.0}
    first = sample(pipe, task, image_jobs(records, 1, seed=3), params)
    torch.rand(7)  # anything else drawing from the global RNG in between
    again = sample(pipe, task, image_jobs(records, 1, seed=3), params)
    other = sample(pipe, task, image_jobs(records, 1, seed=4), params)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def test_ddpm_sweep_through_the_cli(tmp_path):
    sweep = tmp_path / "sweep"
    cli("model=tiny_ddpm", "scheduler=ddim,ddpm", "num_images=6", "steps=2", f"hydra.sweep.dir={sweep}", "-m")
    rows = pd.concat([pd.read_csv(p) for p in sweep.glob("*/metrics.csv")])
    assert sorted(rows["scheduler_class"]) == ["DDIMScheduler", "DDPMScheduler"]
    assert set(rows["n_images"]) == {6} and "prompts" not in rows.columns
    assert "num_images_per_prompt" not in rows.columns and "guidance_scale" not in rows.columns  # knobs it ignores


def test_dit_words_become_class_ids(tmp_path):
    dit = tmp_path / "dit"
    run_inprocess("model=tiny_dit", "prompts=classes", "prompts.words=[volcano,balloon]", "num_images_per_prompt=2",
                  "steps=2", run_dir=dit)
    per_image = pd.read_csv(dit / "per_image.csv")
    assert list(per_image["class_id"]) == [980, 980, 417, 417]
    assert list(per_image["prompt"]) == ["volcano", "volcano", "balloon", "balloon"]


def test_unconditional_count_is_checked_before_anything_loads(tmp_path):
    from conftest import error_of

    assert "num_images must be a positive integer" in error_of("model=tiny_ddpm", "num_images=0", run_dir=tmp_path)
    (tmp_path / "ref").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ref" / "real.png")
    message = error_of("model=tiny_ddpm", "num_images=1", "metrics=[fid]", "reference=folder",
                       f"reference.path={tmp_path / 'ref'}", run_dir=tmp_path / "r")
    assert "metric 'fid' needs at least 2 images but this run makes 1" in message


def test_unconditional_runs_reuse_samples_across_counts_and_refuse_what_has_no_effect(tmp_path):
    """num_images only says how many samples a run draws: a larger run reuses the stored ones (sample i is
    sample i). Prompt settings and per-prompt diversity mean nothing for unconditional samples: refused,
    and the unconditional presets' diversity is that of all samples."""
    import evalrun
    from evalrun.diversity import sweep_diversity

    store = f"paths.image_store={tmp_path / 'store'}"
    common = ["model=tiny_ddpm", "steps=2", store]
    sweep = evalrun.sweep([*common, "num_images=3", "seed=0,1", "metrics=[diversity]",
                           "metrics.diversity.clip_model=evalrun/tiny-clip"], sweep_dir=tmp_path / "sweep")
    summary = sweep.summary
    assert summary["diversity_groups_mean"].tolist() == [1.0] and summary["diversity.group_by"].tolist() == ["all"]
    larger = run_inprocess(*common, "num_images=5", "seed=0", run_dir=tmp_path / "larger")
    assert larger["provenance"]["images"] == {"sampled": 2, "reused": 3, "repaired": 0}
    first = next(p for p in (tmp_path / "sweep").iterdir() if "seed=0" in p.name)
    for png in sorted((first / "images").glob("*.png")):
        assert png.read_bytes() == (tmp_path / "larger" / "images" / png.name).read_bytes()
    with pytest.raises(EvalrunError, match="unconditional runs have no prompts.*use --group-by all"):
        sweep_diversity([tmp_path / "sweep"], clip_model="evalrun/tiny-clip")

    from conftest import error_of

    assert error_of(*common, "num_images=2", "prompts.limit=2", run_dir=tmp_path / "p").startswith(
        "prompts.limit=2 has no effect on model 'tiny_ddpm' (task unconditional reads no prompts")
    assert error_of(*common, "num_images=2", "prompts=parti", run_dir=tmp_path / "p").startswith("prompts=parti has no")
    assert "set metrics.diversity.group_by=all" in error_of(*common, "num_images=2", "metrics=[diversity]",
                                                            "metrics.diversity.group_by=prompt_id",
                                                            run_dir=tmp_path / "d")
    run_inprocess(*common, "num_images=2", "debug=smoke", run_dir=tmp_path / "smoke")  # smoke's two prompts: not the user's


def test_a_word_that_names_several_classes_is_refused_with_their_ids():
    """ImageNet's id2label gives 'crane' to the bird (134) and the machine (517); get_label_ids kept whichever
    it saw last, silently."""
    from evalrun.tasks.class2img import _words_of_several_classes

    id2label = {"134": "crane", "517": "crane", "639": "maillot, tank suit", "638": "maillot", "0": "tench, Tinca tinca"}
    assert _words_of_several_classes(id2label) == {"crane": [134, 517], "maillot": [638, 639]}
