"""Prompt sets: PartiPrompts (local TSV and the datasets path), filters, shuffle, files, errors."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import PARTI_TSV, compose
from evalrun.errors import ConfigError
from evalrun.prompts import load_prompts

needs_parti = pytest.mark.skipif(not PARTI_TSV.exists(), reason="shared/data/PartiPrompts.tsv not present")


@needs_parti
def test_parti_local_tsv_has_all_rows_with_category_and_challenge():
    records = load_prompts(compose("prompts=parti", f"prompts.path={PARTI_TSV}").prompts)
    frame = pd.read_csv(PARTI_TSV, sep="\t")
    assert len(records) == len(frame) == 1632
    assert [r["prompt"] for r in records[:3]] == [p.strip() for p in frame["Prompt"][:3]]
    assert {r["category"] for r in records} == set(frame["Category"])
    assert {r["challenge"] for r in records} == set(frame["Challenge"])
    assert [r["prompt_id"] for r in records] == list(range(1632))


@needs_parti
def test_parti_filters_shuffle_and_limit_keep_prompt_ids():
    base = [f"prompts.path={PARTI_TSV}", "prompts=parti"]
    frame = pd.read_csv(PARTI_TSV, sep="\t")
    animals = load_prompts(compose(*base, "prompts.category=Animals").prompts)
    assert len(animals) == (frame["Category"] == "Animals").sum()
    both = load_prompts(compose(*base, "prompts.category=[Animals,Vehicles]", "prompts.challenge=Complex").prompts)
    mask = frame["Category"].isin(["Animals", "Vehicles"]) & (frame["Challenge"] == "Complex")
    assert [r["prompt_id"] for r in both] == list(frame.index[mask])
    shuffled = load_prompts(compose(*base, "prompts.shuffle=true", "prompts.shuffle_seed=3", "prompts.limit=20").prompts)
    again = load_prompts(compose(*base, "prompts.shuffle=true", "prompts.shuffle_seed=3", "prompts.limit=20").prompts)
    other = load_prompts(compose(*base, "prompts.shuffle=true", "prompts.shuffle_seed=4", "prompts.limit=20").prompts)
    assert shuffled == again and shuffled != other and len(shuffled) == 20
    for rec in shuffled:  # ids point back at the source row whatever the order
        assert frame["Prompt"][rec["prompt_id"]].strip() == rec["prompt"]


@needs_parti
def test_parti_hub_path_yields_the_same_prompts_as_the_local_file(monkeypatch):
    import datasets

    real = datasets.load_dataset
    calls = []

    def fake_hub(name, split=None, **kwargs):  # stands in for the hub: same rows, loaded by datasets
        calls.append((name, split))
        return real("csv", data_files=str(PARTI_TSV), delimiter="\t", split="train")

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    hub = load_prompts(compose("prompts=parti", "prompts.category='Food & Beverage'").prompts)
    local = load_prompts(compose("prompts=parti", f"prompts.path={PARTI_TSV}", "prompts.category='Food & Beverage'").prompts)
    assert calls == [("nateraw/parti-prompts", "train")]
    assert hub == local and len(hub) == 74


def test_hub_dataset_offline_error_says_how_to_use_a_local_copy(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nateraw/parti-prompts' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(Exception, match="prompts.path=/path/PartiPrompts.tsv"):
        load_prompts(compose("prompts=parti").prompts)


def test_unknown_category_lists_valid_ones(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame({"prompt": ["a", "b", "c"], "category": ["x", "y", "x"]}).to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"\['z'\] not in this prompt set; valid: x, y"):
        load_prompts(compose("prompts=file", f"prompts.path={path}", "prompts.category=z").prompts)
    recs = load_prompts(compose("prompts=file", f"prompts.path={path}", "prompts.category=x").prompts)
    assert [(r["prompt_id"], r["prompt"], r["category"]) for r in recs] == [(0, "a", "x"), (2, "c", "x")]


def test_txt_file_and_drawbench_csv(tmp_path):
    txt = tmp_path / "mine.txt"
    txt.write_text("a red cube\n\n  a blue sphere  \n")
    recs = load_prompts(compose("prompts=file", f"prompts.path={txt}").prompts)
    assert [r["prompt"] for r in recs] == ["a red cube", "a blue sphere"]
    db = tmp_path / "drawbench.tsv"
    pd.DataFrame({"Prompts": ["A tiny cat", "Two dogs"], "Category": ["Counting", "Colors"]}).to_csv(db, sep="\t", index=False)
    recs = load_prompts(compose("prompts=drawbench", f"prompts.path={db}", "prompts.limit=1").prompts)
    assert recs == [{"prompt_id": 0, "prompt": "A tiny cat", "category": "Counting", "challenge": None}]
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    with pytest.raises(ConfigError, match="use .txt, .csv, .tsv or .jsonl"):
        load_prompts(compose("prompts=file", f"prompts.path={tmp_path / 'x.pdf'}").prompts)
