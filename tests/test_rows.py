"""llava_medgpt.rows: the one table-file reader gives the same rows for every file type; bad rows are counted or
raised, never dropped; counts agree with what is read."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llava_medgpt.rows import UnreadableFile, UnreadableRow, count_rows, read_rows

ROWS = [{"id": "q1", "question": "Which nerve?", "answer": "B"},
        {"id": "q2", "question": "Ca, K or Na?", "answer": "A"},  # a comma: CSV must quote it
        {"id": "q3", "question": "Tab\tinside", "answer": "D"}]


def _write_all(tmp_path):
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")  # trailing blank line
    (tmp_path / "t.json").write_text(json.dumps(ROWS, indent=2))
    (tmp_path / "lines.json").write_text("\n".join(json.dumps(r) for r in ROWS))  # MedMCQA: JSON lines as .json
    header = "id,question,answer\n"
    body = 'q1,Which nerve?,B\nq2,"Ca, K or Na?",A\nq3,Tab\tinside,D\n'
    (tmp_path / "t.csv").write_bytes(b"\xef\xbb\xbf" + (header + body).encode())  # byte-order mark
    with gzip.open(tmp_path / "t.csv.gz", "wt", encoding="utf-8") as f:
        f.write(header + body)
    (tmp_path / "t.tsv").write_text('id\tquestion\tanswer\nq1\tWhich nerve?\tB\nq2\tCa, K or Na?\tA\n'
                                    'q3\t"Tab\tinside"\tD\n')
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "t.parquet")


@pytest.mark.parametrize("name", ["t.jsonl", "t.json", "lines.json", "t.csv", "t.csv.gz", "t.tsv", "t.parquet"])
def test_every_file_type_gives_the_same_rows(tmp_path, name):
    _write_all(tmp_path)
    assert list(read_rows(tmp_path / name)) == ROWS
    assert list(read_rows(tmp_path / name, strict=True)) == ROWS
    assert count_rows(tmp_path / name) == 3


def test_json_object_keyed_rows_and_manifest_refusal(tmp_path):
    path = tmp_path / "ori_pqal.json"
    path.write_text(json.dumps({"21645374": {"QUESTION": "Do ...?"}, "12345": "not a row"}))
    rows = list(read_rows(path))
    assert rows[0] == {"QUESTION": "Do ...?", "_key": "21645374"}
    assert isinstance(rows[1], UnreadableRow) and rows[1].reason == "row is not an object"
    assert count_rows(path) == 2
    with pytest.raises(UnreadableFile, match="must be a JSON list of rows, got dict"):
        count_rows(path, json_objects=False)
    with pytest.raises(UnreadableFile, match="ori_pqal.json:12345: row is not an object"):
        list(read_rows(path, strict=True))


def test_bad_json_line_is_a_counted_row_or_an_error_naming_the_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "a"}\n\n{"id": \n{"id": "c"}\n')
    rows = list(read_rows(path))
    assert rows[0] == {"id": "a"} and rows[2] == {"id": "c"} and len(rows) == 3
    assert isinstance(rows[1], UnreadableRow) and rows[1].reason.startswith("invalid JSON") and rows[1].where == "line 3"
    assert count_rows(path) == 3  # lines, as read_rows sees them
    with pytest.raises(UnreadableFile, match=r"t.jsonl:line 3: invalid JSON"):
        list(read_rows(path, strict=True))


def test_headerless_csv_with_fieldnames(tmp_path):
    path = tmp_path / "anatomy_test.csv"
    path.write_text("What is X?,a,b,c,d,C\nShort row,a\n")
    rows = list(read_rows(path, fieldnames=("question", "A", "B", "C", "D", "answer")))
    assert rows[0] == {"question": "What is X?", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "C"}
    assert rows[1]["answer"] is None  # missing cells are None, so the caller can refuse the row


def test_parquet_rows_are_python_values(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"cop": [0, 3], "options": [["a", "b"], ["c"]], "exp": ["x", None],
                             "image": [{"bytes": b"\x89PNG", "path": "a.png"}, None]}), path)
    rows = list(read_rows(path))
    assert rows == [{"cop": 0, "options": ["a", "b"], "exp": "x", "image": {"bytes": b"\x89PNG", "path": "a.png"}},
                    {"cop": 3, "options": ["c"], "exp": None, "image": None}]
    assert type(rows[0]["cop"]) is int and type(rows[0]["options"]) is list


def test_unreadable_files(tmp_path):
    (tmp_path / "broken.json").write_text('[{"id": 1},')
    with pytest.raises(UnreadableFile, match="broken.json: not a JSON file"):
        list(read_rows(tmp_path / "broken.json"))
    (tmp_path / "scalar.json").write_text("3")
    with pytest.raises(UnreadableFile, match="must be a JSON list or object of rows, got int"):
        list(read_rows(tmp_path / "scalar.json"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UnreadableFile, match="unsupported file type"):
        list(read_rows(tmp_path / "notes.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnreadableFile, match="no .tar WebDataset shards"):
        list(read_rows(tmp_path / "empty"))
