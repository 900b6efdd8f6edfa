"""Tables and text files of prompts, edits and images, read verbatim: CSV, TSV, JSON, JSONL and TXT.

Every cell stays text as written (``007`` stays ``007``), a TSV's quotes are text unless the file is quoted
as pandas and Excel quote it, a row with a field more than its header is refused (pandas read it as an index
column), and every refusal is one line naming the config key that gave the file (``prompts.path`` or, for a
table of images made elsewhere, ``model.path``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from evalrun.errors import ConfigError


def check_file(path: Path, key: str = "prompts.path") -> Path:
    if path.is_dir():
        raise ConfigError(f"{key}={str(path)!r} is a directory; give the prompt file inside it")
    if not path.is_file():
        raise ConfigError(f"{key}={str(path)!r} does not exist")
    return path


def read_text(path: Path, encoding: str, group: str = "prompts") -> str:
    """``group``: the config group whose ``path``/``encoding`` keys name the file (prompts, or model for a table
    of images)."""
    try:  # a byte-order mark (Windows editors) is not part of the first prompt
        return path.read_text(encoding=encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{group}.path={str(path)!r} is not valid {encoding} (byte {exc.start}); set "
                          f"{group}.encoding= to the file's encoding (e.g. latin-1, cp1252, utf-16)") from None
    except LookupError:
        raise ConfigError(f"{group}.encoding={encoding!r} is not an encoding Python knows") from None


def text_lines(text: str) -> list[str]:
    """Lines at ``\n`` (or ``\r\n``) only: ``str.splitlines`` also breaks at U+2028, U+0085, form feeds and
    other characters a prompt may hold (JSON writers leave them unescaped), splitting one prompt in two."""
    return [line.removesuffix("\r") for line in text.split("\n")]


_QUOTED = re.compile(r'"((?:[^"]|"")*)"')


def _unquoted(value: Any) -> Any:
    """A TSV cell as written: quotes are text (PartiPrompts' ``"G I G G L E" painted ...`` keeps them), except a
    cell quoted whole with its inner quotes doubled, as pandas and Excel write a cell that holds a quote."""
    if isinstance(value, str) and (found := _QUOTED.fullmatch(value)):
        return found[1].replace('""', '"')
    return value


def _strictly_quoted(text: str) -> bool:
    """Whether a TSV's quotes all follow CSV quoting (Python's csv, strict): then they are quoting."""
    import csv
    import io

    try:
        for _ in csv.reader(io.StringIO(text), dialect="excel-tab", strict=True):
            pass
    except csv.Error:
        return False
    return True


def read_table(path: str | Path, encoding: str = "utf-8", group: str = "prompts"):
    """CSV, TSV, JSON or JSONL into a DataFrame of text cells (local files only), with one-line errors naming
    ``group``'s keys: ``007`` stays ``007``, never the number 7."""
    import csv
    import io

    import pandas as pd

    where = f"{group}.path={str(Path(path).expanduser())!r}"
    path = check_file(Path(path).expanduser(), f"{group}.path")
    suffix = path.suffix.lower()
    if suffix not in (".tsv", ".csv", ".jsonl", ".json"):
        raise ConfigError(f"{where}: a table is read from .csv, .tsv, .json or .jsonl, not "
                          f"{suffix or 'a file without an extension'}; save it as one of those")
    text = read_text(path, encoding, group)
    if suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text_lines(text), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise ConfigError(f"{where} line {n} is not valid JSON ({exc}); each line "
                                      f"must be one JSON object") from None
        if any(not isinstance(r, dict) for r in rows):
            raise ConfigError(f"{where}: each line must be a JSON object with named fields")
        return pd.DataFrame(rows)
    try:
        if suffix == ".json":  # values as JSON types them (no "007" -> 7, no dates)
            if (rows := json.loads(text)) and isinstance(rows, list) and not all(isinstance(r, dict) for r in rows):
                raise ConfigError(f"{where}: a JSON list must hold one object with named fields per row")
            return pd.read_json(io.StringIO(text), dtype=False, convert_dates=False)
        # Blank lines are rows too: in a one-column file an empty prompt is a blank line, and skipping it
        # would silently shift every later prompt's id (and noise). Those at the end shift nothing: an
        # editor's trailing blank line is not an empty prompt.
        text = text.rstrip("\r\n") + "\n"
        # TSV as written: a file quoted as pandas and Excel quote (a cell holding a newline, tab or quote) is read
        # with that quoting; one whose quotes are text (PartiPrompts' '"G I G G L E" painted ...', which strict
        # quoting refuses) verbatim, a quote being part of the text (see _unquoted).
        verbatim = suffix == ".tsv" and not _strictly_quoted(text)
        sep, quoting = ("\t" if suffix == ".tsv" else ","), (csv.QUOTE_NONE if verbatim else csv.QUOTE_MINIMAL)
        _check_field_counts(text, sep, quoting, where)
        # index_col=False: a row with a field too many is never read as an index column (checked above).
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                            skip_blank_lines=False, quoting=quoting, index_col=False)
        return frame.map(_unquoted).rename(columns=_unquoted) if verbatim else frame
    except (ValueError, pd.errors.ParserError, csv.Error) as exc:
        raise ConfigError(f"{where} cannot be parsed as {suffix[1:].upper()} ({str(exc).splitlines()[0]})") from None


def _check_field_counts(text: str, sep: str, quoting: int, where: str) -> None:
    """No data row has more fields than the header. pandas read the extra first field of such a row as the
    index: ``a cat, on a mat,Animals`` ran the prompt " on a mat" without a word."""
    import csv
    import io

    limit = csv.field_size_limit(1 << 30)  # csv's own 131,072-character cell limit refused files pandas reads
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=sep, quoting=quoting))
    finally:
        csv.field_size_limit(limit)
    header = rows[0] if rows else []
    for n, row in enumerate(rows[1:], start=1):
        # Extra fields that are all empty are a trailing delimiter, which index_col=False reads as nothing.
        if len(row) > len(header) and any(cell.strip() for cell in row[len(header):]):
            names, what = ", ".join(map(repr, header)), "comma" if sep == "," else "tab"
            raise ConfigError(f"{where} data row {n} has {len(row)} fields, the header {len(header)} ({names}): quote "
                              f"a field that holds a {what}, or remove the extra field")
