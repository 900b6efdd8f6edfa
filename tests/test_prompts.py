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
    assert [r["prompt"] for r in records[:3]] == list(frame["Prompt"][:3])
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
        assert frame["Prompt"][rec["prompt_id"]] == rec["prompt"]


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
    txt.write_text("a red cube\n\n  \n  a blue sphere  \n")
    recs = load_prompts(compose("prompts=file", f"prompts.path={txt}").prompts)
    assert [(r["prompt_id"], r["prompt"]) for r in recs] == [(0, "a red cube"), (3, "  a blue sphere  ")]  # verbatim
    db = tmp_path / "drawbench.tsv"
    pd.DataFrame({"Prompts": ["A tiny cat", "Two dogs"], "Category": ["Counting", "Colors"]}).to_csv(db, sep="\t", index=False)
    recs = load_prompts(compose("prompts=drawbench", f"prompts.path={db}", "prompts.limit=1").prompts)
    assert recs == [{"prompt_id": 0, "prompt": "A tiny cat", "category": "Counting", "challenge": None}]
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    with pytest.raises(ConfigError, match=r"use .txt \(one prompt per line\), .csv, .tsv, .json or .jsonl$"):
        load_prompts(compose("prompts=file", f"prompts.path={tmp_path / 'x.pdf'}").prompts)
    db_txt = tmp_path / "drawbench.txt"  # a set read from a table: .txt was refused in a line that offered .txt
    db_txt.write_text("A tiny cat\n")
    with pytest.raises(ConfigError, match=r"a table is read from .csv, .tsv, .json or .jsonl, not .txt; save it as"):
        load_prompts(compose("prompts=drawbench", f"prompts.path={db_txt}").prompts)


def test_a_prompt_column_the_file_lacks_is_an_error_and_a_byte_order_mark_is_not_a_prompt(tmp_path):
    """prompts.prompt_column names the column to read: one the file lacks is refused with the columns it
    has (it used to read the file's 'text' column silently); the set's default still finds the usual
    spellings. A UTF-8 byte-order mark is not part of the first prompt."""
    table = tmp_path / "two.csv"
    table.write_text("text,caption\na red cube,a photo of a dog\n")
    with pytest.raises(ConfigError, match=r"prompts.prompt_column='foo' is not a column of the prompts \(columns: "
                                          r"text, caption\)"):
        load_prompts(compose("prompts=file", f"prompts.path={table}", "prompts.prompt_column=foo").prompts)
    assert load_prompts(compose("prompts=file", f"prompts.path={table}").prompts)[0]["prompt"] == "a red cube"
    assert load_prompts(compose("prompts=file", f"prompts.path={table}",
                                "prompts.prompt_column=Caption").prompts)[0]["prompt"] == "a photo of a dog"
    marked = tmp_path / "bom.txt"
    marked.write_bytes("\ufeffa red cube\na red cube\n".encode("utf-8"))
    assert [r["prompt"] for r in load_prompts(compose("prompts=file", f"prompts.path={marked}").prompts)] == \
        ["a red cube", "a red cube"]


def test_runs_on_other_prompts_are_other_configurations(tmp_path):
    """A sweep over prompts.texts (or prompt_column) read other prompts under one prompt-set name: the
    prompts that ran are a column, so the summary keeps the runs apart instead of averaging them as seeds."""
    import evalrun

    result = evalrun.sweep(["prompts.texts=[a red cube],[a blue dog]", "steps=2", "seed=0", "metrics=[]",
                            "paths.image_store=none"], sweep_dir=tmp_path / "sweep")
    summary = pd.read_csv(tmp_path / "sweep" / "summary.csv")
    assert len(summary) == 2 and summary["n_runs"].tolist() == [1, 1]
    assert summary["prompts_sha256"].nunique() == 2
    assert len(result.runs) == 2


def test_inline_texts_a_scalar_is_one_prompt_and_an_empty_one_is_refused():
    """prompts.texts='a cat' was walked a character at a time (prompts 'a', ' ', 'c', ...)."""
    texts = load_prompts(compose("prompts.texts='a cat'").prompts)
    assert [r["prompt"] for r in texts] == ["a cat"]
    with pytest.raises(ConfigError, match=r"prompts.texts has 1 empty prompt\(s\) \(positions \[0\]\)"):
        load_prompts(compose("prompts.texts=['',a dog]").prompts)


def test_trailing_blank_lines_of_a_table_are_not_empty_prompts(tmp_path):
    """An editor's blank line at the end of a CSV was refused as an empty prompt; one in the middle still is
    (skipping it would shift the later prompts' ids)."""
    (tmp_path / "trail.csv").write_text("prompt\na red cube\na blue sphere\n\n\n")
    found = load_prompts(compose("prompts=file", f"prompts.path={tmp_path / 'trail.csv'}").prompts)
    assert [r["prompt"] for r in found] == ["a red cube", "a blue sphere"]
    (tmp_path / "middle.csv").write_text("prompt\na red cube\n\na blue sphere\n")
    with pytest.raises(ConfigError, match="empty prompt"):
        load_prompts(compose("prompts=file", f"prompts.path={tmp_path / 'middle.csv'}").prompts)


def test_prompt_text_is_read_verbatim_from_every_kind_of_file(tmp_path):
    """What the file says is what the model gets: TSV quotes are text (PartiPrompts row 1560 lost the quotes
    of '"G I G G L E" painted ...' to CSV quoting), a line separator inside a prompt does not split it
    (str.splitlines broke at U+2028), a numeric-looking prompt stays text ('007' ran as 7.0), and spaces at
    either end are kept. A TSV cell quoted whole with doubled quotes (as pandas writes one) is unquoted."""
    import json

    texts = ['"Stop" sign on a pole', "a red cube\u2028on a table", "007", "1.50", " a sloth in a go kart ",
             'a "quoted" word, with a comma']
    frame = pd.DataFrame({"prompt": texts, "category": ["c"] * len(texts)})
    files = {"csv": lambda p: frame.to_csv(p, index=False), "jsonl": lambda p: p.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in frame.to_dict("records")) + "\n", encoding="utf-8"),
        "tsv": lambda p: p.write_text("prompt\tcategory\n" + "".join(f"{t}\tc\n" for t in texts), encoding="utf-8"),
        "txt": lambda p: p.write_text("\r\n".join(texts) + "\r\n", encoding="utf-8")}
    for suffix, write in files.items():
        write(tmp_path / f"p.{suffix}")
        recs = load_prompts(compose("prompts=file", f"prompts.path={tmp_path / f'p.{suffix}'}").prompts)
        assert [r["prompt"] for r in recs] == texts, suffix
    frame.to_csv(tmp_path / "pandas.tsv", sep="\t", index=False)  # quotes the cells that hold a quote
    assert '"""Stop"" sign on a pole"' in (tmp_path / "pandas.tsv").read_text()
    recs = load_prompts(compose("prompts=file", f"prompts.path={tmp_path / 'pandas.tsv'}").prompts)
    assert [r["prompt"] for r in recs] == texts
    # A TSV quoted as pandas and Excel quote a cell with a newline or a tab is read with that quoting (read
    # verbatim, the first prompt became two and every later id moved; the tab was refused).
    quoted = [*texts, "a cat\non a mat", "a\ttab"]
    pd.DataFrame({"prompt": quoted}).to_csv(tmp_path / "cells.tsv", sep="\t", index=False)
    recs = load_prompts(compose("prompts=file", f"prompts.path={tmp_path / 'cells.tsv'}").prompts)
    assert [r["prompt"] for r in recs] == quoted


@needs_parti
def test_parti_prompts_are_the_published_text():
    """Every PartiPrompts row as the TSV holds it: split at tabs only (the format has no quoting)."""
    records = load_prompts(compose("prompts=parti", f"prompts.path={PARTI_TSV}").prompts)
    rows = [line.split("\t") for line in PARTI_TSV.read_text(encoding="utf-8").split("\n")[1:] if line]
    assert [r["prompt"] for r in records] == [row[0] for row in rows]
    assert '"G I G G L E" painted in thick colorful lettering' in records[1560]["prompt"]


def test_edit_instructions_and_captions_are_read_verbatim_too():
    from evalrun.tasks.edit_data import COLUMN_KEYS, _edit_records

    names = {key: key for key in COLUMN_KEYS}
    row = {"input_caption_column": " a cat ", "edit_column": '"make it" blue', "output_caption_column": "007"}
    record = _edit_records([row], names, "test")[0]
    assert (record["input_caption"], record["prompt"], record["output_caption"]) == (" a cat ", '"make it" blue', "007")
    assert _edit_records([{**row, "Category": "Shapes"}], names, "test")[0]["category"] == "Shapes"  # was None


def test_the_column_named_is_read_when_another_differs_only_in_case(tmp_path):
    table = tmp_path / "two.csv"
    table.write_text("prompt,Prompt\na red cube,A RED CUBE\n")
    assert load_prompts(compose("prompts=file", f"prompts.path={table}", "prompts.prompt_column=prompt").prompts
                        )[0]["prompt"] == "a red cube"  # the last column in any case was read
    assert load_prompts(compose("prompts=file", f"prompts.path={table}", "prompts.prompt_column=Prompt").prompts
                        )[0]["prompt"] == "A RED CUBE"


@pytest.mark.parametrize("text, row, fields", [
    ("prompt,category\na cat, on a mat,Animals\na dog,Animals\n", 1, 3),  # ran the prompt " on a mat"
    ("prompt\na dog\na cat, on a mat\n", 2, 2),                           # was called an empty prompt in row 1
])
def test_a_row_with_an_unquoted_comma_is_refused_not_shifted(tmp_path, text, row, fields):
    table = tmp_path / "p.csv"
    table.write_text(text)
    with pytest.raises(ConfigError, match=rf"data row {row} has {fields} fields, the header {fields - 1} .*quote a "
                                          r"field that holds a comma"):
        load_prompts(compose("prompts=file", f"prompts.path={table}").prompts)
    table.write_text(text.replace("a cat, on a mat", '"a cat, on a mat"'))  # quoted, as the message says
    assert "a cat, on a mat" in [r["prompt"] for r in load_prompts(compose("prompts=file", f"prompts.path={table}").prompts)]


def test_a_table_of_images_names_the_model_keys(tmp_path):
    """A table of images made elsewhere is model.path=, read with model.encoding: its errors named prompts.*,
    keys that do nothing there."""
    from evalrun.tasks.images import _table_records

    table = tmp_path / "t.csv"
    table.write_bytes("image,prompt\nx.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"^model.path='.*t.csv' is not valid utf-8 \(byte \d+\); set model.encoding="):
        _table_records(table, {"encoding": None})


def test_a_run_folders_text_fields_are_read_as_written(tmp_path):
    """Scoring a run's images/ reads its images.csv: category 007 came back as 7, challenge 1.50 as 1.5."""
    from evalrun.tasks.images import _run_records

    (tmp_path / "images").mkdir()
    pd.DataFrame({"path": ["images/a.png"], "prompt": ["0042"], "prompt_id": [0], "image_index": [0],
                  "category": ["007"], "challenge": ["1.50"]}).to_csv(tmp_path / "images.csv", index=False)
    assert _run_records(tmp_path / "images")["a.png"] == {"prompt": "0042", "prompt_id": 0, "image_index": 0,
                                                         "category": "007", "challenge": "1.50"}


def test_a_json_list_of_anything_but_objects_is_one_line(tmp_path):
    table = tmp_path / "p.json"
    table.write_text('[{"prompt": "a"}, 5]')
    with pytest.raises(ConfigError, match=r"p.json'?: a JSON list must hold one object with named fields per row"):
        load_prompts(compose("prompts=file", f"prompts.path={table}").prompts)


def test_a_json_prompt_that_is_not_text_is_refused_and_knob_columns_are_named(tmp_path, caplog):
    import logging

    table = tmp_path / "p.jsonl"
    table.write_text('{"prompt": "a cat"}\n{"prompt": ["a", "b"]}\n')
    with pytest.raises(ConfigError, match=r"the prompt in data row 1 \(counting from 0\) is a list, not text"):
        load_prompts(compose("prompts=file", f"prompts.path={table}").prompts)  # ran "['a', 'b']"
    extra = tmp_path / "extra.csv"
    extra.write_text("prompt,negative_prompt,Seed\na cat,blurry,3\n")
    with caplog.at_level(logging.WARNING):
        assert load_prompts(compose("prompts=file", f"prompts.path={extra}").prompts)[0]["prompt"] == "a cat"
    assert "column(s) negative_prompt, Seed are not read" in caplog.text


def test_a_trailing_comma_and_a_long_cell_are_read(tmp_path):
    """Checking field counts must refuse only a field too many that holds something: a trailing delimiter is
    nothing (pandas read its row's prompt as the index before index_col=False), and csv's 131,072-character
    cell limit is not a CSV rule."""
    trailing = tmp_path / "t.csv"
    trailing.write_text("prompt,category\na cat,Animals,\na dog,Animals,\n")
    assert [(r["prompt"], r["category"]) for r in load_prompts(compose("prompts=file", f"prompts.path={trailing}").prompts)
            ] == [("a cat", "Animals"), ("a dog", "Animals")]
    long = tmp_path / "long.csv"
    long.write_text("prompt,category\n" + "x" * 200_000 + ",y\n")
    assert len(load_prompts(compose("prompts=file", f"prompts.path={long}").prompts)[0]["prompt"]) == 200_000
