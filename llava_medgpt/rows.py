"""The one reader of table files: rows (dicts) of JSON, JSON lines, CSV/TSV, Parquet and WebDataset shards.

    for row in read_rows("train.parquet"):          # streamed; a bad line comes as UnreadableRow (counted)
        ...
    rows = list(read_rows("test.jsonl", strict=True))  # a bad line raises, naming file and line
    n = count_rows("manifest.jsonl")                 # without parsing the rows where the format allows

The converters (data/convert.py), the evaluation tasks (eval/tasks), the recipe counts and decontamination all
read through here, so a release file gives the same rows (same Python types) to training and to evaluation.
Training manifests are random-accessed through data/index.py instead, which needs byte offsets per record.

File types (by name):
    .jsonl         one JSON value per line; blank lines are not rows
    .json          a list of rows; an object {key: row} (PubMedQA's ori_pqal.json) gives rows with "_key" set;
                   a file of JSON lines under a .json name (MedMCQA's official train/dev/test.json) reads as .jsonl
    .csv, .tsv     header row, then rows of text (a UTF-8 byte-order mark is dropped); also .csv.gz / .tsv.gz.
                   `fieldnames` names the columns of a file without a header row (MMLU's CSV release)
    .parquet       rows as pyarrow gives them: Python ints/floats/str, None for nulls, lists, dicts for structs
    .tar           a WebDataset shard: the members sharing a key form one row (read_webdataset)
    a folder       every .tar shard below it, in name order
"""

import csv
import gzip
import json
import os
import re
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

ROW_FILE_TYPES = (".jsonl", ".json", ".csv", ".tsv", ".csv.gz", ".tsv.gz", ".parquet", ".tar")


class UnreadableFile(ValueError):
    """The file as a whole cannot be read as rows (type, a .json that does not parse, no shards); names it."""


class UnreadableRow:
    """A row that could not even be parsed (an invalid JSON line, an unsafe tar member); `reason` is a short,
    stable text (counted by reason), `where` says which line or member."""

    def __init__(self, reason: str, where: str = ""):
        self.reason = reason
        self.where = where

    def __repr__(self) -> str:
        return f"UnreadableRow({self.reason!r}, {self.where!r})"


def read_rows(path: str | os.PathLike, strict: bool = False, fieldnames: Sequence[str] | None = None,
              json_objects: bool = True) -> Iterator[dict | UnreadableRow]:
    """The rows of one file (or a folder of WebDataset shards), streamed where the format allows.

    strict: raise UnreadableFile (naming file and line) at the first unparsable row instead of yielding an
        UnreadableRow for the caller to count.
    fieldnames: column names of a CSV/TSV file that has no header row.
    json_objects: False refuses a .json file holding an object (training manifests are lists).
    """
    rows = _rows(str(path), fieldnames, json_objects)
    if not strict:
        return rows
    return _raising(str(path), rows)


def _raising(path: str, rows: Iterator[Any]) -> Iterator[Any]:
    for row in rows:
        if isinstance(row, UnreadableRow):
            raise UnreadableFile(f"{path}{':' + row.where if row.where else ''}: {row.reason}")
        yield row


def _rows(path: str, fieldnames: Sequence[str] | None, json_objects: bool) -> Iterator[Any]:
    if path.endswith(".jsonl") or (path.endswith(".json") and _is_json_lines(path)):
        with open(path, encoding="utf-8") as f:
            yield from _json_lines(f)
    elif path.endswith(".json"):
        yield from _json_document(path, json_objects)
    elif path.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz")):
        delimiter = "\t" if path.endswith((".tsv", ".tsv.gz")) else ","
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", newline="", encoding="utf-8-sig") as f:
            yield from csv.DictReader(f, fieldnames=fieldnames, delimiter=delimiter)
    elif path.endswith(".parquet"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
    elif path.endswith(".tar"):
        yield from read_webdataset(path)
    elif os.path.isdir(path):
        shards = sorted(str(p) for p in Path(path).rglob("*.tar"))
        if not shards:
            raise UnreadableFile(f"{path}: folder holds no .tar WebDataset shards")
        for shard in shards:
            yield from read_webdataset(shard)
    else:
        raise UnreadableFile(f"{path}: unsupported file type (expected {', '.join(ROW_FILE_TYPES)} or a folder of "
                             ".tar shards)")


def _json_lines(f: IO[str]) -> Iterator[Any]:
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            yield UnreadableRow(f"invalid JSON ({e.msg})", f"line {n}")


def _json_document(path: str, json_objects: bool) -> Iterator[Any]:
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise UnreadableFile(f"{path}: not a JSON file ({e})") from None
    if isinstance(data, list):
        yield from data
    elif isinstance(data, dict) and json_objects:
        for key, row in data.items():
            yield dict(row, _key=key) if isinstance(row, dict) else UnreadableRow("row is not an object", key)
    else:
        wanted = "a JSON list or object" if json_objects else "a JSON list"
        raise UnreadableFile(f"{path}: must be {wanted} of rows, got {type(data).__name__}")


def _is_json_lines(path: str) -> bool:
    """A .json file holding one JSON object per line, not one document: its first line parses on its own and
    another line follows."""
    with open(path, encoding="utf-8") as f:
        first = f.readline()
        if not first.lstrip().startswith("{"):
            return False
        try:
            json.loads(first)
        except json.JSONDecodeError:
            return False  # a pretty-printed object spans lines
        return bool(f.readline().strip())


def count_rows(path: str | os.PathLike, json_objects: bool = True) -> int:
    """Rows of a file: non-blank lines of JSON lines and footer metadata of Parquet without parsing any row;
    the other types are read."""
    path = str(path)
    if path.endswith(".jsonl") or (path.endswith(".json") and _is_json_lines(path)):
        with open(path, "rb") as f:  # binary line iteration: no JSON parsing, no decoding
            return sum(1 for line in f if line.strip())
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return sum(1 for _ in read_rows(path, json_objects=json_objects))


# ------------------------------------------------------------------------------------------------- WebDataset
# WebDataset's sample grouping: the key is the member path up to the first dot of its file name, the
# extension is the rest ("a/b.c.json" -> key "a/b", field "c.json").
_WDS_MEMBER_RE = re.compile(r"^((?:.*/|)[^./]+)\.([^/]+)$")
WDS_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def _unsafe_member(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]


def _wds_sample(key: str, members: dict[str, bytes], shard: str) -> Any:
    """One sample's members -> row: image members as hub-style {"bytes", "path"} structs, .json parsed,
    .txt/.cls decoded; other members are dropped."""
    row: dict[str, Any] = {"__key__": key, "__shard__": os.path.basename(shard)}
    for ext, data in members.items():
        if ext in WDS_IMAGE_EXTENSIONS:
            row[ext] = {"bytes": data, "path": f"{key}.{ext}"}
        elif ext == "json":
            try:
                row[ext] = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                return UnreadableRow(f"invalid JSON in member '{key}.json'", shard)
        elif ext in ("txt", "cls"):
            try:
                row[ext] = data.decode("utf-8")
            except UnicodeDecodeError:
                return UnreadableRow(f"member '{key}.{ext}' is not UTF-8 text", shard)
    return row


def read_webdataset(path: str | os.PathLike) -> Iterator[Any]:
    """Samples of a WebDataset shard, streamed: consecutive members sharing a key form one row.

    Members are never extracted by name, so a path that tries to leave the archive (`../x.jpg`, absolute
    paths) or a link/device member cannot write anywhere; such members come through as an UnreadableRow.
    """
    path = str(path)
    key, members, bad = None, {}, []  # bad members seen while a sample is open come out after it, in order
    with tarfile.open(path, mode="r|*") as tar:
        for member in tar:
            if member.isdir():
                continue
            if not member.isfile() or _unsafe_member(member.name):
                what = "link or special file" if not member.isfile() else "path leaves the archive root"
                bad.append(UnreadableRow(f"unsafe tar member '{member.name}' ({what})", path))
                continue
            match = _WDS_MEMBER_RE.match(member.name)
            if match is None:
                bad.append(UnreadableRow(f"tar member '{member.name}' has no key.extension name", path))
                continue
            if match.group(1) != key:
                if key is not None:
                    yield _wds_sample(key, members, path)
                yield from bad
                key, members, bad = match.group(1), {}, []
            extracted = tar.extractfile(member)
            members[match.group(2).lower()] = extracted.read() if extracted is not None else b""
    if key is not None:
        yield _wds_sample(key, members, path)
    yield from bad


__all__ = [
    "ROW_FILE_TYPES",
    "UnreadableFile",
    "UnreadableRow",
    "WDS_IMAGE_EXTENSIONS",
    "count_rows",
    "read_rows",
    "read_webdataset",
]
