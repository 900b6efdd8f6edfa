"""Class-conditional (tiny DiT) and unconditional (tiny DDPM) runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import compose, run_cli
from evalrun.classes import prepare_class_records
from evalrun.errors import ConfigError, EvalrunError
from evalrun.generate import image_jobs, sample
from evalrun.pipelines import load_pipeline
from evalrun.prompts import load_prompts


def _dit():
    return load_pipeline(compose("model=tiny_dit").model, torch.device("cpu"), torch.float32)


def test_class_words_map_through_get_label_ids_and_random_is_seeded():
    pipe = _dit()
    words = prepare_class_records(pipe, load_prompts(compose("model=tiny_dit", "prompts=classes").prompts), None)
    assert [r["class_id"] for r in words] == pipe.get_label_ids([r["prompt"] for r in words])
    assert words[0]["prompt"] == "golden retriever" and words[0]["class_id"] == 207
    rand = compose("prompts=classes", "prompts.words=null", "prompts.random=5", "prompts.random_seed=1").prompts
    a, b = load_prompts(rand), load_prompts(rand)
    assert a == b and len({r["class_id"] for r in a}) == 5
    named = prepare_class_records(pipe, a, None)
    assert all(r["prompt"] for r in named)  # ids got readable words from the checkpoint's id2label
    every = load_prompts(compose("prompts=classes", "prompts.words=null", "prompts.all=true").prompts)
    assert [r["class_id"] for r in every] == list(range(1000))
    with pytest.raises(ConfigError, match="exactly one of"):
        load_prompts(compose("prompts=classes", "prompts.random=3").prompts)
    with pytest.raises(EvalrunError, match="'golden retrievr' is not a class word"):
        prepare_class_records(pipe, [{"prompt_id": 0, "prompt": "golden retrievr"}], None)


@pytest.mark.parametrize("model, task, params", [
    ("tiny_dit", "class2img", {"steps": 3, "guidance_scale": 4.0}),
    ("tiny_ddpm", "unconditional", {"steps": 3}),
])
def test_batch_size_does_not_change_images(model, task, params):
    cfg = compose(f"model={model}", "prompts=classes")
    pipe = load_pipeline(cfg.model, torch.device("cpu"), torch.float32)
    records = [{"prompt_id": i, "prompt": "", "class_id": c} for i, c in enumerate([207, 281, 980, 0, 1])]
    jobs = image_jobs(records, 1, seed=3)
    one = np.concatenate([x for _, x in sample(pipe, task, jobs, params, 1)])
    four = np.concatenate([x for _, x in sample(pipe, task, jobs, params, 4)])
    np.testing.assert_allclose(one, four, atol=1e-5, rtol=0)
    assert np.abs(one[0] - one[1]).max() > 1e-3


def test_dit_and_ddpm_runs_through_the_cli(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("model=tiny_ddpm", "scheduler=ddim,ddpm", "num_images=6", "metrics=[]", f"hydra.sweep.dir={sweep}", "-m")
    rows = pd.concat([pd.read_csv(p) for p in sweep.glob("*/metrics.csv")])
    assert sorted(rows["scheduler_class"]) == ["DDIMScheduler", "DDPMScheduler"]
    assert set(rows["n_images"]) == {6} and "prompts" not in rows.columns
    dit = tmp_path / "dit"
    run_cli("model=tiny_dit", "prompts=classes", "prompts.words=[volcano,balloon]", "num_images_per_prompt=2",
            f"hydra.run.dir={dit}")
    per_image = pd.read_csv(dit / "per_image.csv")
    assert list(per_image["class_id"]) == [980, 980, 417, 417]
    assert list(per_image["prompt"]) == ["volcano", "volcano", "balloon", "balloon"]
