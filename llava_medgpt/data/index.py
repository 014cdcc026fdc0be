"""On-disk record index: random access to the records of a manifest without holding the manifest in memory.

LLaVA-OneVision `json.load`s every manifest into a Python list on every rank (hundreds of bytes of Python objects
per record, times ranks); here one streaming pass writes, per record,

    offsets      int64   byte offset of the record in the manifest (N + 1 entries: the last one is the end)
    text_tokens  uint32  estimated text tokens (characters / CHARS_PER_TOKEN plus a per-turn allowance)
    num_images   uint8   images the record refers to (0: text-only)

as .npy files that are memory-mapped on load (13 bytes per record, shared through the page cache by all ranks on a
node), plus `duplicates.npy`: records whose "id" an earlier record of the manifest already has (usually empty),
each with that earlier record's number, so the dataset can skip and count them instead of training twice. Reading record i is one `os.pread` of bytes [offsets[i], offsets[i+1]) and one `json.loads`; pread keeps no
file position, so DataLoader workers forked from one process can share the descriptor.

Manifest formats (registry MANIFEST_FORMATS, by file suffix):
    .jsonl    one record per line (blank lines are not records)
    .json     one JSON list of records (streamed with raw_decode, never loaded whole)
    .parquet  converted once to an uncompressed Arrow IPC file beside the index and memory-mapped; offsets are rows

The cache folder's name carries a key of the manifest's path and of its size, mtime, ctime and inode, so an edited
manifest gets a fresh index even when its size and mtime were kept (`cp -p`, `touch -r`, rsync of an edit made in
the same second): the ctime is set by the kernel on every write and cannot be set back, and a replaced file has a
new inode. The index lives beside the manifest, or under `cache_dir` (`--index_cache_dir`) for read-only dataset
mounts. Several ranks may build the same index at once: each writes a private temporary folder and renames it into
place; the first rename wins and the others load it.
"""

import codecs
import glob
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..processing.records import TURN_TEXT_FIELDS, record_images, record_turns

INDEX_FORMAT_VERSION = 2  # 2: duplicates.npy, key with ctime and inode
CHARS_PER_TOKEN = 4  # byte-level BPE on English / clinical text; only used to group and pack by length
TOKENS_PER_TURN = 8  # role header and end tokens of a chat template turn
MAX_IMAGES_COUNTED = 255  # num_images is stored as uint8


class ManifestFormatError(ValueError):
    """The manifest as a whole cannot be indexed (e.g. a .json file that is not a list); names the file."""


class MalformedRecordError(ValueError):
    """One record's bytes are not a JSON value (or not UTF-8); names the manifest and the record number."""


class IndexLocationError(OSError):
    """The index folder cannot be created (e.g. the dataset is on a read-only mount); names the folder."""


def estimate_record_length(record: Any) -> tuple[int, int]:
    """(estimated text tokens, number of images) of a parsed record; (0, 0) for anything that is not a record.

    A cheap estimate is enough: lengths only decide which samples share a batch or a packed row, and the
    processor measures the true length (and rejects over-long samples) when the sample is built.
    """
    turns = record_turns(record)
    chars = sum(len(turn[key]) for turn in turns for key in TURN_TEXT_FIELDS if isinstance(turn.get(key), str))
    return chars // CHARS_PER_TOKEN + TOKENS_PER_TURN * len(turns), min(len(record_images(record)), MAX_IMAGES_COUNTED)


def _parse_or_none(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:  # malformed lines are indexed anyway; reading them later yields a counted skip
        return None


# ------------------------------------------------------------------------------------------------ scanners
# A scanner streams a manifest once and yields (byte offset, parsed record or None); the end offset comes last.


def _scan_jsonl(path: Path, _workdir: Path) -> Iterator[tuple[int, Any] | int]:
    offset = 0
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                yield offset, _parse_or_none(line)
            offset += len(line)
    yield offset


def _scan_json_list(path: Path, _workdir: Path, chunk_chars: int = 1 << 22) -> Iterator[tuple[int, Any] | int]:
    """Stream the elements of a top-level JSON list with raw_decode; byte offsets are tracked by re-encoding."""
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as f:
        buf, eof = "", False
        pos, byte_pos = 0, 0  # pos: index into buf; byte_pos: file offset of buf[pos]

        def advance(new_pos: int) -> None:
            nonlocal pos, byte_pos
            byte_pos += len(buf[pos:new_pos].encode("utf-8"))
            pos = new_pos

        def fill() -> bool:
            nonlocal buf, pos, eof
            if eof:
                return False
            data = f.read(chunk_chars)
            eof = not data
            buf = buf[pos:] + utf8.decode(data, final=eof)
            pos = 0
            return True

        def skip(chars: str) -> str:
            """Advance over `chars`; returns the next other character ('' at end of file)."""
            while True:
                end = pos
                while end < len(buf) and buf[end] in chars:
                    end += 1
                advance(end)
                if pos < len(buf):
                    return buf[pos]
                if not fill():
                    return ""

        fill()
        if skip(" \t\r\n") != "[":
            raise ManifestFormatError(f"{path}: a .json manifest must be a JSON list of records")
        advance(pos + 1)
        while True:
            char = skip(" \t\r\n,")
            if char == "]":
                yield byte_pos
                return
            if char == "":
                raise ManifestFormatError(f"{path}: unterminated JSON list (no closing ']')")
            while True:
                try:
                    record, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as e:
                    if not fill():  # the whole rest of the file does not parse: the list itself is broken
                        raise ManifestFormatError(
                            f"{path}: invalid JSON in the record list at byte {byte_pos}: {e.msg}"
                        ) from None
            yield byte_pos, record
            advance(end)


ARROW_FILE = "records.arrow"


def _scan_parquet(path: Path, workdir: Path) -> Iterator[tuple[int, Any] | int]:
    """Convert to an uncompressed Arrow IPC file (memory-mappable) in `workdir`; offsets are row numbers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    row = 0
    with pa.OSFile(str(workdir / ARROW_FILE), "wb") as sink, pa.ipc.new_file(sink, parquet.schema_arrow) as writer:
        for batch in parquet.iter_batches(batch_size=4096):
            writer.write_batch(batch)
            for record in batch.to_pylist():
                yield row, _drop_nulls(record)
                row += 1
    yield row


def _drop_nulls(value: Any) -> Any:
    """Arrow gives every struct the union of all keys, with None for the absent ones; JSON records omit them."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


@dataclass(frozen=True)
class ManifestFormat:
    scan: Callable[[Path, Path], Iterator]
    offsets_are_rows: bool  # Parquet: offsets index rows of the Arrow file, not bytes of the manifest


MANIFEST_FORMATS = {
    ".jsonl": ManifestFormat(_scan_jsonl, offsets_are_rows=False),
    ".json": ManifestFormat(_scan_json_list, offsets_are_rows=False),
    ".parquet": ManifestFormat(_scan_parquet, offsets_are_rows=True),
}


def manifest_format(path: str | os.PathLike) -> ManifestFormat:
    suffix = Path(path).suffix
    if suffix not in MANIFEST_FORMATS:
        raise ManifestFormatError(
            f"{path}: unsupported manifest type {suffix!r}; supported: {sorted(MANIFEST_FORMATS)}"
        )
    return MANIFEST_FORMATS[suffix]


def head_records(manifest: str | os.PathLike, n: int) -> list[Any]:
    """The first `n` records of a manifest, parsed (None for a record that is not valid JSON), without reading
    the rest of the file (for validating a recipe before training starts)."""
    path = Path(manifest)
    fmt = manifest_format(path)
    if fmt.offsets_are_rows:
        import pyarrow.parquet as pq

        batch = next(pq.ParquetFile(path).iter_batches(batch_size=max(n, 1)), None)
        return [] if batch is None else [_drop_nulls(r) for r in batch.to_pylist()[:n]]
    records = []
    for item in fmt.scan(path, path.parent):
        if isinstance(item, int) or len(records) == n:
            break
        records.append(item[1])
    return records


# ------------------------------------------------------------------------------------------------- building


def _path_key(manifest: Path) -> str:
    return hashlib.sha256(str(manifest).encode("utf-8")).hexdigest()[:12]


def manifest_version_key(stat: os.stat_result) -> str:
    """Changes whenever the file's content may have: size, mtime, ctime (not settable by users) and inode."""
    fields = f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_dev}:{stat.st_ino}"
    return hashlib.sha256(fields.encode("ascii")).hexdigest()[:16]


def index_dir_for(manifest: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the index of `manifest` lives: keyed by its absolute path and manifest_version_key."""
    manifest = Path(manifest).resolve()
    name = f"{manifest.name}.index-v{INDEX_FORMAT_VERSION}-{_path_key(manifest)}-{manifest_version_key(manifest.stat())}"
    return (Path(cache_dir) if cache_dir is not None else manifest.parent) / name


class _GrowableArray:
    """Append-only numpy buffer (amortised doubling), so the build pass never holds Python ints per record."""

    def __init__(self, dtype):
        self.data = np.empty(1 << 16, dtype=dtype)
        self.size = 0

    def append(self, value) -> None:
        if self.size == len(self.data):
            self.data = np.resize(self.data, 2 * len(self.data))
        self.data[self.size] = value
        self.size += 1

    def array(self) -> np.ndarray:
        return self.data[: self.size]


def _id_hash(record: Any) -> int:
    """64-bit hash of the record's string id (0: no usable id; such records fail validation anyway)."""
    if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"]:
        return 0
    digest = hashlib.blake2b(record["id"].encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


def _repeated_hashes(hashes: np.ndarray) -> np.ndarray:
    """[D, 2] int64 (record, earlier record with the same hash), for every record whose hash came before."""
    order = np.argsort(hashes, kind="stable")  # equal hashes stay in record order
    ordered = hashes[order]
    repeat = (ordered[1:] == ordered[:-1]) & (ordered[1:] != 0)
    return np.stack([order[1:][repeat], order[:-1][repeat]], axis=1).astype(np.int64).reshape(-1, 2)


def build_index(manifest: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """One streaming pass over `manifest`; writes offsets / text_tokens / num_images / duplicates (.npy) and
    meta.json."""
    manifest, out_dir = Path(manifest), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stat = manifest.stat()  # before the pass: a write during it changes the key, and the next open rebuilds
    offsets = _GrowableArray(np.int64)
    text_tokens = _GrowableArray(np.uint32)
    num_images = _GrowableArray(np.uint8)
    id_hashes = _GrowableArray(np.uint64)  # only while building (8 bytes per record)
    for item in manifest_format(manifest).scan(manifest, out_dir):
        if isinstance(item, int):  # the end offset
            offsets.append(item)
            break
        offset, record = item
        tokens, images = estimate_record_length(record)
        offsets.append(offset)
        text_tokens.append(min(tokens, np.iinfo(np.uint32).max))
        num_images.append(images)
        id_hashes.append(_id_hash(record))
    np.save(out_dir / "offsets.npy", offsets.array())
    np.save(out_dir / "text_tokens.npy", text_tokens.array())
    np.save(out_dir / "num_images.npy", num_images.array())
    duplicates = _confirmed_duplicates(manifest, out_dir, _repeated_hashes(id_hashes.array()))
    np.save(out_dir / "duplicates.npy", duplicates)
    meta = {
        "manifest": str(manifest.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
        "num_records": int(text_tokens.size),
        "num_duplicate_ids": int(len(duplicates)),
        "format_version": INDEX_FORMAT_VERSION,
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _confirmed_duplicates(manifest: Path, out_dir: Path, candidates: np.ndarray) -> np.ndarray:
    """The candidate pairs whose ids really are equal (a 64-bit hash collision is possible, if unlikely)."""
    if not len(candidates):
        return candidates
    np.save(out_dir / "duplicates.npy", np.zeros((0, 2), np.int64))  # RecordIndex needs the file to open
    index = RecordIndex(manifest, out_dir)
    try:
        same = [index.read(int(a))["id"] == index.read(int(b))["id"] for a, b in candidates]
    finally:
        index.close()
    confirmed = candidates[np.asarray(same, dtype=bool)]
    return confirmed[np.argsort(confirmed[:, 0], kind="stable")]


def _remove_stale_indexes(final: Path, manifest: Path) -> None:
    """Indexes of earlier versions of the same manifest (same path key, any format version or file version)."""
    for sibling in final.parent.glob(f"{glob.escape(manifest.name)}.index-v*-{_path_key(manifest)}-*"):
        if sibling != final and sibling.is_dir() and not sibling.name.endswith(".tmp"):
            shutil.rmtree(sibling, ignore_errors=True)


# ------------------------------------------------------------------------------------------------- reading


class RecordIndex:
    """Random access to the records of one manifest. Use `RecordIndex.open(path)`; it builds the index if needed.

    Attributes (memory-mapped numpy arrays): `offsets` [N + 1], `text_tokens` [N], `num_images` [N].
    """

    def __init__(self, manifest: str | os.PathLike, index_dir: str | os.PathLike):
        self.manifest = Path(manifest)
        self.index_dir = Path(index_dir)
        self.offsets = np.load(self.index_dir / "offsets.npy", mmap_mode="r")
        self.text_tokens = np.load(self.index_dir / "text_tokens.npy", mmap_mode="r")
        self.num_images = np.load(self.index_dir / "num_images.npy", mmap_mode="r")
        if len(self.offsets) != len(self.text_tokens) + 1 or len(self.num_images) != len(self.text_tokens):
            raise ManifestFormatError(f"{self.index_dir}: inconsistent index files; delete the folder to rebuild")
        duplicates = np.load(self.index_dir / "duplicates.npy")  # [D, 2]: (record, earlier record), by record
        self.duplicate_of = {int(a): int(b) for a, b in duplicates}
        self._format = manifest_format(self.manifest)
        self._fd: int | None = None
        self._fd_pid: int | None = None
        self._arrow = None

    @classmethod
    def open(cls, manifest: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> "RecordIndex":
        """Load the cached index of `manifest`, building it first if it is missing or the manifest changed."""
        final = index_dir_for(manifest, cache_dir)
        if not (final / "meta.json").is_file():
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=final.name + ".", suffix=".tmp", dir=final.parent))
            except OSError as err:
                hint = "" if cache_dir is not None else (
                    " (a read-only dataset mount? pass --index_cache_dir, or cache_dir=, to keep indexes elsewhere)")
                raise IndexLocationError(
                    err.errno, f"cannot create the record index of {manifest} in {final.parent}: "
                    f"{err.strerror or err}{hint}") from err
            try:
                build_index(manifest, tmp)
                try:
                    os.rename(tmp, final)  # atomic; fails if another process got there first
                except OSError:
                    if not (final / "meta.json").is_file():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            _remove_stale_indexes(final, Path(manifest).resolve())
        return cls(manifest, final)

    def __len__(self) -> int:
        return len(self.text_tokens)

    def __getstate__(self) -> dict:
        # Pickled into DataLoader workers (spawn): reopen the maps and the file there instead of copying them.
        return {"manifest": self.manifest, "index_dir": self.index_dir}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["manifest"], state["index_dir"])

    def record_name(self, i: int) -> str:
        """How to name record i when its id cannot be read: '<manifest file name>#<record number>'."""
        return f"{self.manifest.name}#{i}"

    def earlier_duplicates(self, i: int) -> list[int]:
        """Record numbers before i that have record i's id, nearest first (empty for almost every record)."""
        found = []
        while i in self.duplicate_of:
            i = self.duplicate_of[i]
            found.append(i)
        return found

    def read_bytes(self, i: int) -> bytes:
        if not 0 <= i < len(self):
            raise IndexError(f"record {i} out of range for {self.manifest} ({len(self)} records)")
        if self._fd is None or self._fd_pid != os.getpid():
            self._fd = os.open(self.manifest, os.O_RDONLY)
            self._fd_pid = os.getpid()
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return os.pread(self._fd, end - start, start)

    def read(self, i: int) -> Any:
        """The parsed record i. Raises MalformedRecordError if its bytes are not one JSON value."""
        if self._format.offsets_are_rows:
            return self._read_row(i)
        try:
            # The span may end with the newline (JSONL) or the separating comma (JSON list).
            text = self.read_bytes(i).decode("utf-8").strip().removesuffix(",")
            return json.loads(text)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise MalformedRecordError(f"{self.record_name(i)}: not a JSON record: {e}") from None

    def _read_row(self, i: int) -> Any:
        if not 0 <= i < len(self):
            raise IndexError(f"record {i} out of range for {self.manifest} ({len(self)} records)")
        if self._arrow is None:
            import pyarrow as pa

            # Zero-copy: the table's buffers point into the memory map.
            self._arrow = pa.ipc.open_file(pa.memory_map(str(self.index_dir / ARROW_FILE), "r")).read_all()
        return _drop_nulls(self._arrow.slice(i, 1).to_pylist()[0])

    def close(self) -> None:
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


__all__ = [
    "IndexLocationError",
    "head_records",
    "MANIFEST_FORMATS",
    "MalformedRecordError",
    "ManifestFormatError",
    "RecordIndex",
    "build_index",
    "estimate_record_length",
    "index_dir_for",
    "manifest_version_key",
]
