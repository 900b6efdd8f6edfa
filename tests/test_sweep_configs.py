"""evalrun.sweep_configs: the job configs a CLI sweep runs, rebuilt from the sweep's composition, equal
Hydra's own ``load_sweep_config`` of each job, Hydra's section included (overrides, choices,
override_dirname, the sweep's ``${now:}``)."""

from __future__ import annotations

import pickle

import pytest
from omegaconf import OmegaConf

from evalrun.api import sweep_jobs
from evalrun.paths import CONF_DIR


@pytest.fixture
def hydra_loader():
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import evalrun.__main__  # noqa: F401  (the resolvers the config uses)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield GlobalHydra.instance().hydra.config_loader
    GlobalHydra.instance().clear()


def master_config(loader, overrides):
    """The multirun config Hydra hands its sweeper (its command line: hydra.* first, then the task's)."""
    from hydra.types import RunMode

    return loader.load_configuration(config_name="config", overrides=list(overrides), run_mode=RunMode.MULTIRUN)


def jobs_of(master, overrides):
    """The jobs the basic sweeper makes of the command line's task overrides (hydra.* ones set up the sweep)."""
    return sweep_jobs(master.hydra.sweeper.params or {}, [o for o in overrides if not o.startswith("hydra")])


def assert_same_as_hydras(loader, overrides, extra_jobs=()):
    from evalrun.sweep_configs import SweepConfigLoader

    master = master_config(loader, overrides)
    mine = SweepConfigLoader(loader)
    jobs = [*jobs_of(master, overrides), *extra_jobs]
    for job in jobs:
        ours, hydras = mine.load_sweep_config(master, list(job)), loader.load_sweep_config(master, list(job))
        assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras), job
        for key in ("hydra.sweep.dir", "hydra.sweep.subdir", "hydra.job.override_dirname", "steps", "prompts"):
            assert OmegaConf.to_container(OmegaConf.create({"v": OmegaConf.select(ours, key)}), resolve=True) == \
                OmegaConf.to_container(OmegaConf.create({"v": OmegaConf.select(hydras, key)}), resolve=True), (job, key)
        assert OmegaConf.is_struct(ours) and OmegaConf.is_struct(ours.scheduler) and not OmegaConf.is_readonly(ours.hydra)
    return mine, jobs


def test_a_scheduler_and_seed_sweep_is_rebuilt_and_equals_hydras(hydra_loader, tmp_path):
    overrides = [f"hydra.sweep.dir={tmp_path}", "scheduler=ddim,dpm,euler_a,default", "seed=0,1", "steps=4",
                 "prompts=file", "prompts.path=/tmp/p.txt", "metrics=[]"]
    mine, jobs = assert_same_as_hydras(hydra_loader, overrides)
    assert mine.rebuilt == len(jobs) == 8
    first = mine.load_sweep_config(master_config(hydra_loader, overrides), jobs[0])
    first.scheduler.kwargs = {"changed": 1}  # each job's config is its own
    assert "changed" not in mine.load_sweep_config(master_config(hydra_loader, overrides), jobs[0]).scheduler.kwargs


def test_experiment_params_prompt_sets_models_and_lists_equal_hydras(hydra_loader, tmp_path):
    """An experiment's hydra.sweeper.params, every prompt set, models (with and without defaults lists),
    metric lists and + overrides: rebuilt or composed by Hydra, each equals Hydra's."""
    options = sorted(p.stem for p in (CONF_DIR / "prompts").glob("*.yaml"))
    assert_same_as_hydras(hydra_loader, [f"hydra.sweep.dir={tmp_path}", "experiment=scheduler_comparison",
                                         "prompts.limit=2", "metrics=[]"],
                          extra_jobs=[["experiment=scheduler_comparison", "prompts.limit=2", "metrics=[]", f"prompts={p}"]
                                      for p in options])
    mine, _ = assert_same_as_hydras(hydra_loader, [
        "model=tiny,tiny_ddpm,tiny_dit", "metrics=[clip_score],[clip_score,fid]", "+extra_key=1,2", "seed=3"])
    assert mine.rebuilt > 0


def test_what_the_rebuilds_do_not_cover_goes_to_hydra(hydra_loader, tmp_path):
    """A job's own hydra.* override is Hydra's to compose; a + inside a swapped group is composed in full by the rebuilds."""
    from evalrun.sweep_configs import SweepConfigLoader

    master = master_config(hydra_loader, [f"hydra.sweep.dir={tmp_path}", "seed=0,1"])
    mine = SweepConfigLoader(hydra_loader)
    for job, rebuilt in ((["seed=0", "hydra.job.name=other"], 0), (["scheduler=dpm", "+scheduler.kwargs.eta=1"], 1)):
        assert OmegaConf.to_yaml(mine.load_sweep_config(master, job)) == \
            OmegaConf.to_yaml(hydra_loader.load_sweep_config(master, job))
        assert mine.rebuilt == rebuilt, job
    plain = pickle.loads(pickle.dumps(mine))  # a launcher composing in another process gets Hydra's loader
    assert type(plain) is type(hydra_loader)


def test_config_groups_from_the_sweeps_search_path(hydra_loader, tmp_path):
    """hydra.searchpath adds a scheduler option: the rebuilds read the sweep's own search path."""
    extra = tmp_path / "conf" / "scheduler"
    extra.mkdir(parents=True)
    (extra / "mine.yaml").write_text("name: mine\nclass_name: DDIMScheduler\nkwargs: {eta: 0.5}\n")
    (extra.parent / "prompts").mkdir()
    mine, jobs = assert_same_as_hydras(hydra_loader, [f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
                                                      "scheduler=mine,ddim", "seed=0,1"])
    assert mine.rebuilt == len(jobs) == 4


def test_the_cli_sweeps_with_evalruns_sweeper_by_default():
    from evalrun.composition import compose

    assert compose(hydra=True).hydra.sweeper._target_.endswith("evalrun_sweeper.EvalrunSweeper")
    assert compose(["hydra/sweeper=basic"], hydra=True).hydra.sweeper._target_.endswith("BasicSweeper")


def test_a_jobs_now_is_the_sweeps(hydra_loader):
    """${now:} in hydra.sweep.dir resolves to the sweep's start in every job, as Hydra copies its cache."""
    import time

    from evalrun.sweep_configs import SweepConfigLoader

    master = master_config(hydra_loader, ["scheduler=ddim,dpm"])
    started = master.hydra.sweep.dir  # resolved (and cached) when the sweep starts
    time.sleep(1.1)
    job = SweepConfigLoader(hydra_loader).load_sweep_config(master, ["scheduler=dpm"])
    assert job.hydra.sweep.dir == started


def test_the_pre_check_leaves_a_finished_job_to_its_run(tmp_path):
    """A job whose dir holds a complete run of its configuration is not pre-checked (the class checks import
    diffusers: re-running a finished sweep took twice as long as with Hydra's sweeper); another configuration
    there, or none, is."""
    from omegaconf import OmegaConf

    import evalrun
    from evalrun.composition import compose
    from evalrun.preflight import already_complete

    overrides = [f"hydra.sweep.dir={tmp_path}", "prompts.limit=1", "steps=2", "metrics=[]", "paths.image_store=none"]
    job = compose(overrides, hydra=True)
    run_dir = tmp_path / str(OmegaConf.select(job, "hydra.sweep.subdir"))
    assert not already_complete(job)
    evalrun.evaluate(overrides[1:], run_dir=run_dir)
    assert already_complete(compose(overrides, hydra=True))
    other = compose([*overrides, "guidance_scale=3"], hydra=True)
    (tmp_path / str(OmegaConf.select(other, "hydra.sweep.subdir"))).mkdir()
    import shutil

    shutil.copy(run_dir / "run.json", tmp_path / str(OmegaConf.select(other, "hydra.sweep.subdir")) / "run.json")
    assert not already_complete(other)  # a complete run, of another configuration
