"""Generation: one generator per image makes images independent of batch size and batch mates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import compose, run_inprocess
from evalrun.generate import sample
from evalrun.jobs import generator_seed, image_jobs
from evalrun.pipelines import load_pipeline, set_scheduler
from evalrun.prompts import load_prompts
from evalrun.tasks import get_task


def images(pipe, task, jobs, params, batch_size):
    return np.concatenate([sample(pipe, task, jobs[i:i + batch_size], params) for i in range(0, len(jobs), batch_size)])


def test_batch_size_does_not_change_images():
    cfg = compose("prompts.limit=3", "num_images_per_prompt=2")
    pipe = load_pipeline(cfg.model, torch.device("cpu"), torch.float32)
    task = get_task("text2img")
    params = {"steps": 3, "guidance_scale": 7.5, "height": 32, "width": 32}
    for scheduler in ("default", "euler_a", "dpm_sde"):  # ancestral/SDE samplers draw noise every step
        set_scheduler(pipe, compose(f"scheduler={scheduler}").scheduler)
        jobs = image_jobs(load_prompts(cfg.prompts), 2, seed=0)
        one = images(pipe, task, jobs, params, batch_size=1)
        four = images(pipe, task, jobs, params, batch_size=4)
        np.testing.assert_allclose(one, four, atol=1e-5, rtol=0)
        # An image does not depend on which prompts share its batch either.
        alone = images(pipe, task, jobs[3:4], params, batch_size=1)
        np.testing.assert_allclose(alone[0], four[3], atol=1e-5, rtol=0)
        assert np.abs(four[0] - four[1]).max() > 1e-3  # different images really differ


def test_generator_seeds_are_distinct_and_mix_all_three_integers():
    seeds = {generator_seed(s, p, i) for s in range(3) for p in range(50) for i in range(4)}
    assert len(seeds) == 3 * 50 * 4
    assert all(0 <= s < 2**63 for s in seeds)
    # The documented recipe, computed independently: SeedSequence([seed, prompt_id, image_index]), top 63 bits.
    expected = int(np.random.SeedSequence([5, 7, 1]).generate_state(1, np.uint64)[0]) >> 1
    assert generator_seed(5, 7, 1) == expected
    # Neighbouring seeds do not overlap the way seed * K + i schemes do.
    assert generator_seed(1, 0, 0) != generator_seed(0, 1, 0) != generator_seed(0, 0, 1)


def test_pipeline_is_reused_and_scheduler_swaps_do_not_leak():
    cfg = compose()
    device = torch.device("cpu")
    pipe = load_pipeline(cfg.model, device, torch.float32)
    karras = set_scheduler(pipe, compose("scheduler=dpm_karras").scheduler)
    assert karras["class"] == "DPMSolverMultistepScheduler" and karras["use_karras_sigmas"] is True
    assert load_pipeline(cfg.model, device, torch.float32) is pipe
    plain = set_scheduler(pipe, compose("scheduler=dpm").scheduler)
    assert plain["use_karras_sigmas"] is False  # the previous job's override did not stick
    default = set_scheduler(pipe, compose("scheduler=default").scheduler)
    assert default["class"] == "PNDMScheduler"
    # Values the checkpoint set explicitly survive a switch (diffusers' from_config semantics).
    assert karras["beta_schedule"] == plain["beta_schedule"] == default["beta_schedule"] == "scaled_linear"


def test_same_scheduler_option_keeps_its_object_and_its_images(tmp_path):
    """A sweep's next job with the same scheduler keeps the pipeline's scheduler object (as the batches
    of one run do): its images equal those of a freshly built scheduler, a stochastic one included."""
    import shutil

    from evalrun import tiny
    from evalrun.pipelines import checkpoint_scheduler

    cfg = compose("prompts.limit=2")
    pipe = load_pipeline(cfg.model, torch.device("cpu"), torch.float32)
    task, jobs = get_task("text2img"), image_jobs(load_prompts(cfg.prompts), 1, seed=0)
    params = {"steps": 3, "guidance_scale": 7.5, "height": 32, "width": 32}
    option = compose("scheduler=dpm_sde").scheduler
    first = set_scheduler(pipe, option)
    kept = pipe.scheduler
    before = images(pipe, task, jobs, params, batch_size=2)
    assert set_scheduler(pipe, compose("scheduler=dpm_sde").scheduler) == first and pipe.scheduler is kept
    again = images(pipe, task, jobs, params, batch_size=2)
    set_scheduler(pipe, compose("scheduler=dpm").scheduler)
    assert pipe.scheduler is not kept
    set_scheduler(pipe, option)
    assert pipe.scheduler is not kept  # rebuilt from the checkpoint's own
    np.testing.assert_array_equal(before, again)
    np.testing.assert_array_equal(before, images(pipe, task, jobs, params, batch_size=2))

    # The checkpoint's own scheduler is read once per process, and again when its files change.
    folder = tmp_path / "tiny-sd"
    shutil.copytree(tiny.resolve("evalrun/tiny-sd"), folder)
    model = compose(f"model.path={folder}").model
    assert checkpoint_scheduler(model) is checkpoint_scheduler(model)
    config = folder / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace('"steps_offset": 1', '"steps_offset": 10'))
    assert checkpoint_scheduler(model).config.steps_offset == 10


def test_sampling_one_batch_ahead_gives_the_serial_runs_images_and_numbers(tmp_path, monkeypatch):
    """On a GPU the next batch samples on a thread while this one is hashed, written and scored. Forced on
    here: the batch after next really samples while an earlier image is scored (it waits for that), the
    run keeps its order through reused images, and its pixels and numbers are the serial run's."""
    import threading

    import pandas as pd

    import evalrun.cost as cost
    import evalrun.generate as generate
    import evalrun.outputs as outputs
    import evalrun.scoring as scoring
    from conftest import run_inprocess
    from evalrun.images import ImageStore, Manifest

    common = ("prompts.limit=6", "batch_size=2", f"paths.image_store={tmp_path / 'store'}")
    serial = run_inprocess(*common, run_dir=tmp_path / "serial")
    order = list(pd.read_csv(tmp_path / "serial" / "images.csv")["image_id"])
    keys = {i: e["key"] for i, e in Manifest(tmp_path / "serial" / "images").entries.items()}
    assert len(order) == 6
    for image_id in order[1:5]:  # 0 and 5 are reused; 1-4 are sampled in two batches
        ImageStore(tmp_path / "store").path(keys[image_id]).unlink()

    scored_first, calls, real_sample, real_add = threading.Event(), [], generate.sample, scoring.StreamScorer.add

    def sample(pipe, task, jobs, params, cost=None, warmup=False):
        ids = [j.image_id for j in jobs]
        waited = ids[0] == order[3] and scored_first.wait(timeout=30)  # serial sampling would wait in vain
        calls.append((ids, threading.current_thread().name, waited))
        return real_sample(pipe, task, jobs, params, cost, warmup)

    def add(self, produced):
        real_add(self, produced)
        if produced.job.image_id == order[1]:
            scored_first.set()

    monkeypatch.setattr(outputs, "overlaps_sampling", lambda device: True)
    monkeypatch.setattr(generate, "sample", sample)
    monkeypatch.setattr(scoring.StreamScorer, "add", add)
    ahead = run_inprocess(*common, run_dir=tmp_path / "ahead")
    assert [c[0] for c in calls] == [order[1:3], order[3:5]]
    assert {c[1].split("_")[0] for c in calls} == {"evalrun-sample"} and calls[1][2] is True
    assert ahead["provenance"]["images"] == {"sampled": 4, "reused": 2, "repaired": 0}
    timed = {o.column for o in cost.OUTPUTS}  # what sampling took differs; every number scored does not
    assert {k: v for k, v in ahead["values"].items() if k not in timed} == \
        {k: v for k, v in serial["values"].items() if k not in timed} != {}
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ahead" / "images.csv")[["image_id", "pixels"]],
                                  pd.read_csv(tmp_path / "serial" / "images.csv")[["image_id", "pixels"]])
    assert len(Manifest(tmp_path / "ahead" / "images").entries) == 6


def test_an_error_while_sampling_ahead_stops_the_run_and_its_thread(tmp_path, monkeypatch):
    import threading

    import evalrun.generate as generate
    import evalrun.outputs as outputs
    from conftest import run_inprocess

    real_sample, calls = generate.sample, []

    def failing(pipe, task, jobs, params, cost=None, warmup=False):
        calls.append(len(jobs))
        if len(calls) == 2:
            raise RuntimeError("sampler broke")
        return real_sample(pipe, task, jobs, params, cost, warmup)

    monkeypatch.setattr(outputs, "overlaps_sampling", lambda device: True)
    monkeypatch.setattr(generate, "sample", failing)
    try:
        run_inprocess("prompts.limit=6", "batch_size=2", "paths.image_store=none", run_dir=tmp_path / "run")
    except RuntimeError as exc:
        assert str(exc) == "sampler broke"
    else:
        raise AssertionError("the sampling thread's error was lost")
    assert calls == [2, 2]  # nothing sampled after the error
    assert not [t for t in threading.enumerate() if t.name.startswith("evalrun-sample")]
    assert not (tmp_path / "run" / "run.json").exists()


def test_a_batch_queued_behind_a_failed_one_never_samples():
    """The caller may queue the next batch before it takes the error of the one before (it is still
    scoring an earlier batch): the sampling thread skips it, even when it is idle and free to run it."""
    import time

    import pytest

    from evalrun.threads import Ahead

    ran = []

    def batch(name):
        ran.append(name)
        if name == "second":
            raise RuntimeError("sampler broke")
        return name

    ahead = Ahead(threaded=True)
    ahead.submit(batch, "first")
    ahead.submit(batch, "second")
    while len(ran) < 2 or not ahead._futures[-1].done():  # the second has failed; the thread is idle
        time.sleep(0.01)
    ahead.submit(batch, "third")
    time.sleep(0.2)  # time enough for an idle thread to start it
    assert list(ahead.take(2)) == ["first"]
    with pytest.raises(RuntimeError, match="sampler broke"):
        list(ahead.take(0))
    ahead.close()
    assert ran == ["first", "second"]


def test_the_switches_lock_goes_to_the_thread_that_asked_first():
    """Sampling releases the lock after each batch and asks again for the next; feature extraction,
    waiting meanwhile, gets it first (Python's own locks may hand it straight back to the sampler)."""
    import threading
    import time

    from evalrun.threads import FairRLock

    lock, order = FairRLock(), []

    def extraction():
        with lock:
            order.append("extraction")

    with lock:
        with lock:  # reentrant
            waiting = threading.Thread(target=extraction)
            waiting.start()
            deadline = time.monotonic() + 10
            while not lock._queue and time.monotonic() < deadline:
                time.sleep(0.001)
            assert list(lock._queue) == [waiting.ident]
    with lock:  # the sampler's next batch: only after the extraction that was waiting
        order.append("next batch")
    waiting.join(timeout=10)
    assert order == ["extraction", "next batch"]
    try:
        lock.release()
    except RuntimeError as exc:
        assert "does not hold" in str(exc)
    else:
        raise AssertionError("releasing an unheld lock passed silently")


def test_a_run_short_of_images_is_never_written(tmp_path, monkeypatch):
    """A stream that loses an image (as the double out-of-memory halving once did) fails the run
    instead of writing results over fewer images than the config asks for."""
    import evalrun.generate as generate
    from conftest import run_inprocess

    real_run = generate.ImageStream.run

    def losing_one(self, *args, **kwargs):
        for produced in real_run(self, *args, **kwargs):
            if produced.index != 1:
                yield produced

    monkeypatch.setattr(generate.ImageStream, "run", losing_one)
    try:
        run_inprocess("prompts.limit=3", "paths.image_store=none", run_dir=tmp_path / "run")
    except RuntimeError as exc:
        assert str(exc) == "the image stream gave 2 images for 3 jobs"
    else:
        raise AssertionError("a run short of an image was written")
    assert not (tmp_path / "run" / "run.json").exists()


def test_a_checkpoint_resaved_in_place_is_loaded_again(tmp_path):
    """The process keeps its pipeline across runs; weights re-saved into the same folder must not be
    served from that cache (the run would sample the old weights under the new weights' key)."""
    import shutil

    from evalrun import tiny

    local = tmp_path / "sd"
    shutil.copytree(tiny.resolve("evalrun/tiny-sd"), local)
    model = compose(f"model.path={local}").model
    first = load_pipeline(model, torch.device("cpu"), torch.float32)
    assert load_pipeline(model, torch.device("cpu"), torch.float32) is first
    with torch.no_grad():
        first.unet.conv_out.bias.add_(1.0)
    first.unet.save_pretrained(local / "unet")  # in place, as a fine-tuning script would
    again = load_pipeline(model, torch.device("cpu"), torch.float32)
    assert again is not first
    torch.testing.assert_close(again.unet.conv_out.bias, first.unet.conv_out.bias)


def test_a_reused_image_timed_in_another_runs_last_smaller_call_is_not_counted(tmp_path):
    """Three images at batch 2 are sampled in calls of 2 and 1. A four-image run reuses all three: the two of
    the full call count as timed at batch 2, the one of the last call (1 image) does not, its own image does."""
    common = ["model=tiny_ddpm", "steps=2", "batch_size=2", "metrics=[]", f"paths.image_store={tmp_path / 'store'}"]
    first = run_inprocess(*common, "num_images=3", run_dir=tmp_path / "three")
    assert first["provenance"]["cost_timed_images"] == 3  # a run's own last call counts
    again = run_inprocess(*common, "num_images=3", run_dir=tmp_path / "three_again")  # every image from the store
    assert again["provenance"]["images"]["reused"] == 3 and again["provenance"]["cost_timed_images"] == 3
    assert again["values"]["sample_seconds_per_image"] == first["values"]["sample_seconds_per_image"]
    more = run_inprocess(*common, "num_images=4", run_dir=tmp_path / "four")
    assert more["provenance"]["images"] == {"sampled": 1, "reused": 3, "repaired": 0}
    assert more["provenance"]["cost_timed_images"] == 3  # was 4: the 1-image call counted as timed at batch 2
    calls = pd.read_csv(tmp_path / "four" / "images.csv")["sample_seconds"].tolist()
    first_calls = pd.read_csv(tmp_path / "three" / "images.csv")["sample_seconds"].tolist()
    assert calls[:3] == first_calls  # the reused images keep their own timings in images.csv
    expected = (calls[0] + calls[1] + calls[3]) / 3
    assert more["values"]["sample_seconds_per_image"] == pytest.approx(expected, rel=1e-12)


def test_reused_images_keep_their_nfe_but_not_a_timing_made_at_another_batch_size(tmp_path):
    """Images reused from the store were timed by the run that sampled them: at another batch size their
    seconds are not this run's (left out, NaN when no image was timed here); at the same batch size and
    device they are; NFE does not depend on the batch and always counts."""
    import math

    common = ["model=tiny_ddpm", "num_images=4", "steps=2", f"paths.image_store={tmp_path / 'store'}"]
    first = run_inprocess(*common, "batch_size=1", run_dir=tmp_path / "b1")
    other = run_inprocess(*common, "batch_size=4", run_dir=tmp_path / "b4")
    again = run_inprocess(*common, "batch_size=1", "metrics=[]", run_dir=tmp_path / "b1_again")
    assert other["provenance"]["images"]["reused"] == 4 and other["provenance"]["cost_timed_images"] == 0
    assert math.isnan(other["values"]["sample_seconds_per_image"])
    assert other["values"]["nfe"] == first["values"]["nfe"] == 2.0
    assert again["provenance"]["cost_timed_images"] == 4
    assert again["values"]["sample_seconds_per_image"] == first["values"]["sample_seconds_per_image"] > 0


def test_a_call_at_a_new_denoiser_shape_is_made_again_and_the_second_timed(tmp_path, monkeypatch):
    """The denoiser's first call at an input shape compiles (torch.compile), picks kernels and allocates; timed, it
    landed on the first job of a sweep (19 s against 1 s a batch with compile=true) and the order of jobs moved
    the cost axis. Simulated here by a UNet 0.4 s slower the first time it meets an input shape. A guidance of 1
    switches CFG off and halves the UNet's batch: a new shape too. Reused images count only timings made under
    the run's own timing_warmup."""
    import functools
    import time

    import diffusers
    import pandas as pd
    from PIL import Image

    calls, compiled = [], set()
    original_call, original_forward = diffusers.StableDiffusionPipeline.__call__, diffusers.UNet2DConditionModel.forward

    @functools.wraps(original_call)  # evalrun reads the signature
    def counted(self, *args, **kwargs):
        calls.append(len(kwargs["prompt"]))
        return original_call(self, *args, **kwargs)

    def compiling(self, sample, *args, **kwargs):
        if (id(self), tuple(sample.shape)) not in compiled:
            compiled.add((id(self), tuple(sample.shape)))
            time.sleep(0.4)
        return original_forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "__call__", counted)
    monkeypatch.setattr(diffusers.UNet2DConditionModel, "forward", compiling)
    # A size no other test samples at: this process's pipeline has never met these shapes.
    common = ["prompts.limit=3", "batch_size=2", "height=48", "width=16", "steps=2", "metrics=[]"]
    off = "paths.image_store=none"

    def seconds(name: str) -> list[float]:
        return pd.read_csv(tmp_path / name / "images.csv")["sample_seconds"].tolist()

    run_inprocess(*common, off, run_dir=tmp_path / "warm")
    assert calls == [2, 2, 1, 1]  # the batch of 2 and the last batch of 1 each met a new shape: sampled twice
    assert max(seconds("warm")) < 0.2  # the 0.4 s were not timed (at least 0.2 an image if they were)
    run_inprocess(*common, off, "seed=1", run_dir=tmp_path / "again")
    assert calls[4:] == [2, 1]  # the same pipeline has run these shapes: once each
    run_inprocess(*common, off, "guidance_scale=1.0", run_dir=tmp_path / "no_cfg")
    # CFG off halves the UNet's batch: 2 images run it at the shape the last batch of 1 ran with CFG, 1 image is new
    assert calls[6:] == [2, 1, 1] and max(seconds("no_cfg")) < 0.2
    compiled.clear()  # as in a new process
    cold = run_inprocess(*common, off, "timing_warmup=false", run_dir=tmp_path / "cold")
    assert calls[9:] == [2, 1] and min(seconds("cold")) >= 0.2 and seconds("cold")[2] >= 0.4
    assert cold["values"]["sample_seconds_per_image"] > 0.2
    assert pd.read_csv(tmp_path / "cold" / "metrics.csv")["timing_warmup"].tolist() == [False]
    assert "timing_warmup" not in pd.read_csv(tmp_path / "warm" / "metrics.csv")
    for png in (tmp_path / "warm" / "images").glob("*.png"):  # the second call's pixels (the files hold timings)
        assert np.array_equal(np.asarray(Image.open(tmp_path / "cold" / "images" / png.name)), np.asarray(Image.open(png)))
    # Timings reused from the store count only under the setting they were made with.
    store = f"paths.image_store={tmp_path / 'store'}"
    compiled.clear()
    run_inprocess(*common, store, "seed=5", "timing_warmup=false", run_dir=tmp_path / "stored_cold")
    reused = run_inprocess(*common, store, "seed=5", run_dir=tmp_path / "reused_warm")
    assert reused["provenance"]["images"]["reused"] == 3 and reused["provenance"]["cost_timed_images"] == 0
    assert np.isnan(reused["values"]["sample_seconds_per_image"])
