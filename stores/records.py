"""Reading a file as records: a JSON array (index N), one JSON value, or JSON Lines (line N).

Each record comes with its redacted JSON bytes, so the raw copy that is stored and everything
parsed from it has passed the redactor. JSON Lines and JSON arrays are streamed: memory is
bounded by a window of the file plus the largest record, whatever the file's size. A record that
cannot be read (invalid JSON or UTF-8, nesting deeper than 1024, cut off by the end of the file)
becomes an error record; the records around it are read as usual.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import orjson

from memkit.stores.redact import Redactor, default_redactor

LINE_SUFFIXES = {".jsonl", ".ndjson"}
CHUNK = 4096  # at most this many records are screened for secrets at once ...
CHUNK_BYTES = 16 << 20  # ... or this many bytes: one RE2 pass per batch, so bigger batches amortise its setup
WINDOW = 8 << 20  # bytes of a JSON array file decoded at a time
REJECT_RAW_LIMIT = 65536
TRUNCATED = "truncated (the file ends inside this record)"


@dataclass(slots=True)
class Record:
    location: str
    line: Optional[int]
    value: Any = None
    data: bytes = b""  # the record's redacted JSON bytes (on errors: the bytes as read, redacted)
    error: Optional[str] = None  # set when the record is not valid JSON


@dataclass
class Redactions:
    """What the redactor found in one file: totals, and rows per record for the `redactions` table."""

    redactor: Optional[Redactor] = None
    counts: Counter = field(default_factory=Counter)
    rows: list[tuple[str, str, int, list[str]]] = field(default_factory=list)  # location, detector, count, paths

    def __post_init__(self):
        if self.redactor is None:
            self.redactor = default_redactor()

    def note(self, location: str, counts: Counter, paths: dict[str, list[str]]) -> None:
        self.counts.update(counts)
        for detector, n in counts.items():
            self.rows.append((location, detector, n, paths.get(detector, [])))

    def redact_batch(self, items: list[bytes], locations: Optional[list[str]] = None) -> list[bytes]:
        """Redact records' bytes (for readers of binary formats); with locations, hits become rows."""
        cleaned = self.redactor.redact_batch(items)
        out = []
        for i, (item, c) in enumerate(zip(items, cleaned)):
            if c is None:
                out.append(item)
                continue
            if locations is not None:
                self.note(locations[i], c.counts, c.paths)
            else:
                self.counts.update(c.counts)
            out.append(c.data)
        return out

    def write_job(self, source_sha256: str) -> Callable:
        """A job for the ingest writer: this file's redaction rows (never the secrets themselves)."""
        rows, self.rows = self.rows, []

        def job(cur) -> None:
            if not rows:
                return
            import pyarrow as pa

            table = pa.table({
                "source_sha256": [source_sha256] * len(rows), "location": [r[0] for r in rows],
                "detector": [r[1] for r in rows], "count": pa.array([r[2] for r in rows], pa.int32()),
                "paths": pa.array([r[3] for r in rows], pa.list_(pa.string())),
            })
            cur.register("_redactions", table)
            try:
                cur.execute("""INSERT INTO redactions BY NAME SELECT * FROM _redactions
                               ON CONFLICT DO UPDATE SET count = excluded.count, paths = excluded.paths""")
            finally:
                cur.unregister("_redactions")

        return job


def _parse(location: str, line: Optional[int], data: bytes) -> Record:
    try:
        return Record(location, line, orjson.loads(data), data)
    except orjson.JSONDecodeError as e:
        return Record(location, line, data=data[:REJECT_RAW_LIMIT], error=_reason(data, e))


def _reason(data: bytes, e: orjson.JSONDecodeError) -> str:
    msg = str(e)
    if "UTF-8" in msg:
        return _utf8_error(data)
    if "depth" in msg or "recursion" in msg:
        return "nested too deeply (more than 1024 levels)"
    return f"not valid JSON ({msg.split(':', 1)[0]})"


def _utf8_error(data: bytes) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not valid UTF-8 (byte {e.start})"
    return "not valid UTF-8"


def _screened(batch: list[tuple[str, Optional[int], bytes]], red: Redactions) -> Iterator[Record]:
    """Records of a batch of (location, line, bytes), redacted: one screen pass for the whole batch."""
    cleaned = red.redactor.redact_batch([data for _, _, data in batch])
    for (location, line, data), c in zip(batch, cleaned):
        if c is None:
            yield _parse(location, line, data)
            continue
        if c.counts:
            red.note(location, c.counts, c.paths)
        yield Record(location, line, c.value, c.data) if c.parsed else _parse(location, line, c.data)


def _batched(items: Iterator[tuple[str, Optional[int], bytes]], red: Redactions) -> Iterator[Record]:
    batch: list = []
    size = 0
    for item in items:
        batch.append(item)
        size += len(item[2])
        if len(batch) >= CHUNK or size >= CHUNK_BYTES:
            yield from _screened(batch, red)
            batch, size = [], 0
    if batch:
        yield from _screened(batch, red)


def _lines(path: Path, red: Redactions) -> Iterator[Record]:
    with open(path, "rb") as f:
        yield from _batched(((f"line {n}", n, line.rstrip(b"\r\n")) for n, line in enumerate(f, start=1) if line.strip()),
                            red)


# ---------------------------------------------------------------- JSON arrays, streamed


class _Window:
    """A sliding window over a file's text. Undecodable bytes are kept as surrogate escapes, so
    each record's bytes are re-encoded exactly and only that record fails UTF-8 validation."""

    def __init__(self, f):
        self.f = f
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.truncated: Optional[str] = None  # the location of an element cut off by the end of the file

    def more(self, at_least: int = WINDOW) -> bool:
        """Drop what was consumed and read more; False at the end of the file."""
        if self.eof:
            return False
        data = self.f.read(max(at_least, WINDOW))
        self.eof = not data
        self.buf = self.buf[self.pos:] + self.decoder.decode(data, final=self.eof)
        self.pos = 0
        return not self.eof


_DECODER = json.JSONDecoder()
_SEPARATOR = re.compile(r"[\s,\ufeff]*")
_PLAIN = re.compile(r'[^"\[\]{}]*')
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_SCALAR = re.compile(r"[^,\]\s]*")


def _extent(buf: str, pos: int) -> Optional[int]:
    """Where the value starting at `pos` ends, by bracket depth outside strings, without parsing
    it (for values the decoder refused); None when the window ends first."""
    if buf[pos] not in '[{"':
        end = _SCALAR.match(buf, pos).end()
        return end if end < len(buf) else None
    depth, n = 0, len(buf)
    while True:
        pos = _PLAIN.match(buf, pos).end()
        if pos >= n:
            return None
        c = buf[pos]
        if c == '"':
            m = _STRING.match(buf, pos)
            if m is None:
                return None
            pos = m.end()
            if depth == 0:
                return pos
            continue
        depth += 1 if c in "[{" else -1
        pos += 1
        if depth <= 0:
            return pos


def _array_items(w: _Window) -> Iterator[tuple[str, Optional[int], bytes]]:
    """(index N, None, bytes) for each element of the array whose '[' is at w.pos."""
    w.pos += 1
    index = 0
    while True:
        w.pos = _SEPARATOR.match(w.buf, w.pos).end()
        if w.pos >= len(w.buf):
            if not w.more():
                return  # the closing bracket is missing, but no element is
            continue
        if w.buf[w.pos] == "]":
            return
        start = w.pos
        try:
            end = _DECODER.raw_decode(w.buf, start)[1]
            if end >= len(w.buf) and not w.eof:  # a number may go on in the next window
                w.more()
                continue
        except (json.JSONDecodeError, RecursionError):
            end = _extent(w.buf, start)
            if end is None:
                if w.more(2 * (len(w.buf) - start)):  # grow geometrically: a 50 MB record is read a few times, not 50
                    continue
                w.truncated = f"index {index}"
                yield w.truncated, None, w.buf[start:].encode("utf-8", "surrogateescape")
                return
        yield f"index {index}", None, w.buf[start:end].encode("utf-8", "surrogateescape")
        w.pos = end
        index += 1


def _array(path: Path, red: Redactions) -> Iterator[Record]:
    with open(path, "rb") as f:
        w = _Window(f)
        w.more()
        w.pos = _SEPARATOR.match(w.buf, w.pos).end()
        for record in _batched(_array_items(w), red):
            if record.error and record.location == w.truncated:
                record.error = TRUNCATED
            yield record


# ---------------------------------------------------------------- whole files


def _first_line_is_json(data: bytes) -> bool:
    first = data.lstrip().split(b"\n", 1)[0]
    try:
        orjson.loads(first)
    except orjson.JSONDecodeError:
        return False
    return True


def is_message_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def _dumps(value: Any) -> bytes:
    """The value's JSON bytes. orjson writes at most 255 levels but reads 1024: a record nested
    between the two is still written (by json), so its reader rejects it instead of ingest failing."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False).encode()


def _values(values: list, red: Redactions) -> Iterator[Record]:
    return _batched(((f"index {i}", None, _dumps(v)) for i, v in enumerate(values)), red)


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(WINDOW)


def _first_is_message(path: Path) -> bool:
    """Whether a JSON array file's first element is a chat message (so the file is one run)."""
    with open(path, "rb") as f:
        w = _Window(f)
        w.more()
        w.pos = _SEPARATOR.match(w.buf, w.pos).end()
        for _, _, data in _array_items(w):
            try:
                first = orjson.loads(data)
            except orjson.JSONDecodeError:
                return False
            return isinstance(first, dict) and "role" in first
    return False


def read_records(path: Path, red: Redactions) -> Iterator[Record]:
    """Yield the file's records. JSON Lines and JSON arrays of runs are streamed; any other JSON
    file (one object, or one run as a bare message list) is parsed whole."""
    if path.suffix.lower() in LINE_SUFFIXES:
        yield from _lines(path, red)
        return
    head = _head(path)
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"[") and not _first_is_message(path):
        yield from _array(path, red)
        return
    first, _, rest = stripped.partition(b"\n")
    if not stripped.startswith(b"[") and rest.strip() and _first_line_is_json(first):
        yield from _lines(path, red)  # JSON Lines under a .json name
        return
    data = path.read_bytes()
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        if _first_line_is_json(data):
            yield from _lines(path, red)
        else:
            cleaned = red.redact_batch([data[:REJECT_RAW_LIMIT]], ["file"])[0]
            yield Record("file", None, data=cleaned, error=_reason(data, e))
        return
    del data
    if isinstance(value, list) and not is_message_list(value):
        yield from _values(value, red)
    else:
        yield from _values([value], red)
