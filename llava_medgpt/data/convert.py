"""Convert one raw source (its published schema) into a JSONL manifest of training records.

Run as: python -m llava_medgpt.data.convert SOURCE --input RAW --output out.jsonl [--image-root DIR]

RAW is any file llava_medgpt.rows reads: a .jsonl / .json (list, or {key: row} object) / .csv / .tsv / .parquet
file, a WebDataset .tar shard or a folder of them (BIOMEDICA), or for the MIMIC-CXR converters the MIMIC-CXR-JPG root folder. With
--image-root, every image a record names must exist under that folder, and images embedded in rows (hub Image
structs {"bytes": ..., "path": ...}, WebDataset image members) are written below <image-root>/<SOURCE>/ and
replaced by their relative path. Rows that cannot be converted are skipped and reported with their row number
(1 = first data row or sample) and reason; the full list goes to <output>.skipped.tsv.

The output is written atomically (a temporary file in the output's folder, fsync, rename). When no record
converts -- the wrong SOURCE for the file, an empty file -- the command fails (exit 1) naming the columns it found
and the ones SOURCE expects, and writes nothing; a missing or unreadable --input fails (exit 2) the same way.
"""

import argparse
import hashlib
import io
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..fileio import atomic_write
from ..rows import UnreadableFile, UnreadableRow, read_rows
from .converters import CONVERTERS, Converter, SkipRow
from .converters.report import read_mimic_cxr_studies
from ..processing.records import RecordError, record_images, validate_record

_EXAMPLES_PER_REASON = 5
_ROWS_FOR_COLUMNS = 100  # rows whose keys are listed when nothing converts


class ConvertError(RuntimeError):
    """The conversion as a whole failed (nothing converted); the message says what was found."""


class MissingInputError(ConvertError):
    """--input does not exist."""


@dataclass
class ConvertReport:
    source: str
    rows_read: int = 0
    records_written: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason)
    details: dict[int, str] = field(default_factory=dict)  # row number -> the row's detail (e.g. the path tried)
    columns: dict[str, None] = field(default_factory=dict)  # keys of the first rows, in order of appearance

    def reasons(self) -> Counter:
        return Counter(reason for _, reason in self.skipped)

    def format(self) -> str:
        lines = [f"{self.source}: {self.rows_read} rows read, {self.records_written} records written, "
                 f"{len(self.skipped)} rows skipped"]
        for reason, n in self.reasons().most_common():
            rows = [r for r, why in self.skipped if why == reason][:_EXAMPLES_PER_REASON]
            more = ", ..." if n > len(rows) else ""
            example = next((self.details[r] for r in rows if r in self.details), None)
            tried = f"; e.g. {example}" if example else ""
            lines.append(f"  skipped {n:>8}  {reason}  (rows {', '.join(map(str, rows))}{more}{tried})")
        return "\n".join(lines)


def _describe_columns(layouts: list[tuple[str, ...]]) -> str:
    shown = [", ".join(layout) for layout in layouts]
    return shown[0] if len(shown) == 1 else " or ".join(f"({s})" for s in shown)


def nothing_converted_message(converter: Converter, input_path: str | os.PathLike, report: ConvertReport) -> str:
    """Why nothing converted: what the rows looked like, what the converter expects, which sources would fit."""
    if report.rows_read == 0:
        return f"{converter.name}: nothing converted: {input_path} holds no rows"
    reasons = "; ".join(f"{n} x {reason}" for reason, n in report.reasons().most_common(3))
    found = list(report.columns)
    lines = [f"{converter.name}: nothing converted from {input_path}: all {report.rows_read} rows skipped "
             f"({reasons})",
             f"  columns found (first {_ROWS_FOR_COLUMNS} rows): {', '.join(found) if found else '(none)'}",
             f"  {converter.name} expects: {_describe_columns(converter.expected_columns())}"]
    fitting = [c.name for c in CONVERTERS.values() if c.name != converter.name and c.reader == converter.reader
               and c.accepts_columns(set(found))]
    if fitting:
        lines.append(f"  sources whose columns these rows have: {', '.join(fitting)}")
    return "\n".join(lines)


def _inside(root: Path, relative: str) -> Path | None:
    """root/relative if it stays inside root, else None."""
    target = (root / relative).resolve()
    root = root.resolve()
    return target if target == root or root in target.parents else None


def materialize_images(row: dict, source: str, row_number: int, image_root: Path | None,
                       written: list[Path] | None = None) -> dict:
    """Write embedded images (hub Image structs) to <image_root>/<source>/ and put their relative path in.

    Files are named by their content's SHA-256, so shards converted in separate runs never overwrite each other
    and an image shared by several rows is stored once. Files this row created are appended to `written`, so a
    row skipped later leaves no orphan image behind (a file another row already wrote is never listed)."""
    out = dict(row)
    for key, value in row.items():
        if isinstance(value, dict) and isinstance(value.get("bytes"), (bytes, bytearray)):
            if image_root is None:
                raise SkipRow("embedded image but no --image-root to write it to")
            from PIL import Image

            try:
                with Image.open(io.BytesIO(value["bytes"])) as image:
                    suffix = (image.format or "png").lower()
            except Exception:
                raise SkipRow("embedded image cannot be decoded") from None
            digest = hashlib.sha256(value["bytes"]).hexdigest()
            relative = f"{source}/{digest[:2]}/{digest[:40]}.{suffix}"
            target = image_root / relative
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
                partial.write_bytes(value["bytes"])
                os.replace(partial, target)  # atomic: a killed run never leaves a truncated image
                if written is not None:
                    written.append(target)
            out[key] = relative
    return out


def _remove(paths: list[Path], below: Path | None = None) -> None:
    """Delete files; with `below`, also the folders under it that this leaves empty."""
    for path in paths:
        path.unlink(missing_ok=True)
        if below is None:
            continue
        folder, stop = path.parent, below.resolve()
        while folder.resolve() != stop and stop in folder.resolve().parents:
            try:
                folder.rmdir()  # only succeeds when empty
            except OSError:
                break
            folder = folder.parent


def _check_image(image_root: Path, path: str) -> None:
    resolved = _inside(image_root, path)
    if resolved is None:
        raise SkipRow("image path leaves --image-root", f"{path!r} resolves outside {image_root.resolve()}")
    if not resolved.is_file():
        raise SkipRow("image not found under --image-root", str(resolved))


def convert_rows(converter: Converter, rows: Iterator[Any], image_root: Path | None = None,
                 written: list[Path] | None = None) -> Iterator[tuple]:
    """For each raw row, in order: (row_number, records, None, None) or (row_number, [], skip reason, detail).

    Images this run wrote for rows it kept are appended to `written` (so a failed run can remove them).
    """
    for i, row in enumerate(rows):
        row_number = i + 1
        row_written: list[Path] = []
        try:
            if isinstance(row, UnreadableRow):
                raise SkipRow(row.reason)
            if not isinstance(row, dict):
                raise SkipRow("row is not an object")
            row = materialize_images(row, converter.name, row_number, image_root, row_written)
            records = converter.fn(row, i)
            for record in records:
                validate_record(record)
                if image_root is not None:
                    for path in record_images(record):
                        _check_image(image_root, path)
        except SkipRow as e:
            _remove(row_written)
            yield row_number, [], e.reason, e.detail
            continue
        except RecordError as e:
            _remove(row_written)
            yield row_number, [], f"invalid record: {e.problem}", None
            continue
        if written is not None:
            written.extend(row_written)
        yield row_number, records, None, None


def _recording_columns(rows: Iterator[Any], report: ConvertReport) -> Iterator[Any]:
    """Pass rows through, noting the keys of the first ones (for the error when nothing converts)."""
    for i, row in enumerate(rows):
        if i < _ROWS_FOR_COLUMNS and isinstance(row, dict):
            report.columns.update(dict.fromkeys(str(key) for key in row))
        yield row


def source_rows(converter: Converter, input_path: str | os.PathLike,
                reports_root: str | os.PathLike | None = None) -> Iterator[Any]:
    """The raw rows a converter reads from its input, with the converter's file-level facts merged in."""
    if converter.reader == "mimic_cxr":
        return read_mimic_cxr_studies(input_path, reports_root)
    rows = read_rows(input_path)
    if converter.file_facts is None:
        return rows
    facts = converter.file_facts(str(input_path), read_rows(input_path))  # a first pass over the same file
    return ({**row, **facts} if isinstance(row, dict) else row for row in rows)


def convert_source(name: str, input_path: str | os.PathLike, output_path: str | os.PathLike,
                   image_root: str | os.PathLike | None = None,
                   reports_root: str | os.PathLike | None = None) -> ConvertReport:
    """Convert one raw source into `output_path` (and `<output_path>.skipped.tsv`), both written atomically.

    Raises ConvertError, leaving no output and no image of this run behind, when `input_path` does not exist
    or no record converts (the message names the columns found and expected).
    """
    if name not in CONVERTERS:
        raise KeyError(f"unknown source {name!r}; known: {sorted(CONVERTERS)}")
    converter = CONVERTERS[name]
    if not os.path.exists(input_path):
        raise MissingInputError(f"--input {os.path.abspath(input_path)} does not exist")
    report = ConvertReport(source=name)
    rows = source_rows(converter, input_path, reports_root)
    root = Path(image_root) if image_root else None
    output_path = Path(output_path)
    written: list[Path] = []  # images this run wrote: removed again if the run fails
    try:
        with atomic_write(output_path) as out:
            for row_number, records, reason, detail in convert_rows(converter, _recording_columns(rows, report),
                                                                    root, written):
                report.rows_read += 1
                if reason is not None:
                    report.skipped.append((row_number, reason))
                    if detail is not None:
                        report.details[row_number] = detail
                for record in records:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    report.records_written += 1
            if report.records_written == 0:
                raise ConvertError(nothing_converted_message(converter, input_path, report))
            with atomic_write(f"{output_path}.skipped.tsv") as log:  # committed just before the manifest
                log.write("row\treason\tdetail\n")
                for row_number, reason in report.skipped:
                    log.write(f"{row_number}\t{reason}\t{report.details.get(row_number, '')}\n")
    except BaseException:
        _remove(written, below=root)
        raise
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", choices=sorted(CONVERTERS), help="converter name (see data_recipes/*.yaml)")
    parser.add_argument("--input", required=True, help="raw file, or the MIMIC-CXR-JPG root for mimic_cxr_*")
    parser.add_argument("--output", required=True, help="output JSONL manifest")
    parser.add_argument("--image-root", help="image folder of this source: images are checked / written here")
    parser.add_argument("--reports-root", help="MIMIC-CXR reports root (files/pXX/...txt); default: --input")
    args = parser.parse_args(argv)
    try:
        report = convert_source(args.source, args.input, args.output, args.image_root, args.reports_root)
    except (MissingInputError, UnreadableFile, FileNotFoundError) as e:  # FileNotFoundError: MIMIC layout
        print(f"error: {args.source}: {e}\nnothing written to {args.output}", file=sys.stderr)
        return 2
    except ConvertError as e:
        print(f"error: {e}\nnothing written to {args.output}", file=sys.stderr)
        return 1
    print(report.format())
    print(f"{report.records_written} records written to {args.output}; skipped-row log: {args.output}.skipped.tsv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
