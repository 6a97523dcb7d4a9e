"""Reading a file as records: a JSON array (index N), one JSON value, or JSON Lines (line N).

Each record comes with its redacted JSON bytes, so the raw copy that is stored and everything
parsed from it has passed the redactor. JSON Lines and JSON arrays are streamed: memory is
bounded by a window of the file plus the largest record, whatever the file's size; with
`max_bytes` (ingest.max_record_bytes) by a window plus that limit, as a record over it is skipped,
not read, and kept as its first 64 KB (see stores/limits.py). A record that cannot be read (invalid
JSON or UTF-8, nesting deeper than 1024, cut off by the end of the file, over `max_bytes`) becomes
an error record; the records around it are read as usual.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import orjson

from memkit.stores.limits import too_big
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
    """What the redactor found in one file: totals, and rows per record for the `redactions` table,
    each with the ids of the runs made from that record (see `claim`)."""

    redactor: Optional[Redactor] = None
    counts: Counter = field(default_factory=Counter)
    rows: list[list] = field(default_factory=list)  # [location, detector, count, paths, run ids]
    _by_location: dict[str, list[int]] = field(default_factory=dict)
    _by_string: dict[int, set[int]] = field(default_factory=dict)  # hash of a redacted string -> rows
    _placed: set[int] = field(default_factory=set)  # rows whose run was found by location

    def __post_init__(self):
        if self.redactor is None:
            self.redactor = default_redactor()

    def note(self, location: str, counts: Counter, paths: dict[str, list[str]],
             strings: Optional[dict[str, set[int]]] = None) -> None:
        self.counts.update(counts)
        for detector, n in counts.items():
            row = len(self.rows)
            self.rows.append([location, detector, n, paths.get(detector, []), []])
            self._by_location.setdefault(location, []).append(row)
            for h in (strings or {}).get(detector, ()):
                self._by_string.setdefault(h, set()).add(row)

    def claim(self, run_id: str, record: Record) -> None:
        """Give the rows of the records `run_id` was made from its id. A run read from one record
        has its location (`line 3`) or one under it (`line 3 run 2`, `index 0, simulation 1`); a run
        assembled from several (a Claude Code session, an OpenTelemetry trace, a tau2 simulation of
        a results file) is recognised by its raw JSON holding a string the redactor changed in a
        record. Identical redacted strings in two runs of one file give the record both."""
        if not self.rows:
            return
        loc = record.location
        hit: set[int] = set()
        for end in [len(loc), *(i for i, c in enumerate(loc) if c in " ,")]:
            rows = self._by_location.get(loc[:end])
            if rows:
                hit.update(rows)
                self._placed.update(rows)
        if self._by_string and _MARKER in record.data:
            for h in _marked_strings(record.data):
                hit.update(r for r in self._by_string.get(h, ()) if r not in self._placed)
        for r in hit:
            ids = self.rows[r][4]
            if run_id not in ids:
                ids.append(run_id)

    def redact_batch(self, items: list[bytes], locations: Optional[list[str]] = None) -> list[bytes]:
        """Redact records' bytes (for readers of binary formats); with locations, hits become rows."""
        cleaned = self.redactor.redact_batch(items)
        out = []
        for i, (item, c) in enumerate(zip(items, cleaned)):
            if c is None:
                out.append(item)
                continue
            if locations is not None:
                self.note(locations[i], c.counts, c.paths, c.strings)
            else:
                self.counts.update(c.counts)
            out.append(c.data)
        return out

    def write_job(self, source_sha256: str) -> Callable:
        """A job for the ingest writer: this file's redaction rows (never the secrets themselves)."""
        rows, self.rows = self.rows, []
        self._by_location, self._by_string, self._placed = {}, {}, set()
        return partial(write_redactions, source_sha256, rows)  # picklable: see stores/ingest.py


def write_redactions(source_sha256: str, rows: list[tuple], cur) -> None:
    if not rows:
        return
    import pyarrow as pa

    table = pa.table({
        "source_sha256": [source_sha256] * len(rows), "location": [r[0] for r in rows],
        "detector": [r[1] for r in rows], "count": pa.array([r[2] for r in rows], pa.int32()),
        "paths": pa.array([r[3] for r in rows], pa.list_(pa.string())),
        "run_ids": pa.array([r[4] for r in rows], pa.list_(pa.string())),
    })
    cur.register("_redactions", table)
    try:
        cur.execute("""INSERT INTO redactions BY NAME SELECT * FROM _redactions
                       ON CONFLICT DO UPDATE SET count = excluded.count, paths = excluded.paths,
                       run_ids = excluded.run_ids""")
    finally:
        cur.unregister("_redactions")


_MARKER = b"[REDACTED:"


def _marked_strings(data: bytes) -> set[int]:
    """Hashes of the JSON strings in `data` (decoded) that hold a redaction marker: the strings
    as the redactor left them, so they can be matched with `Cleaned.strings`."""
    out: set[int] = set()
    pos = data.find(_MARKER)
    while pos >= 0:
        start, end = _quote(data, pos, back=True), _quote(data, pos, back=False)
        if start < 0 or end < 0:
            break
        try:
            out.add(hash(orjson.loads(data[start:end + 1])))
        except orjson.JSONDecodeError:
            pass
        pos = data.find(_MARKER, end + 1)
    return out


def _quote(data: bytes, pos: int, back: bool) -> int:
    """The nearest quote before (or after) `pos` that is not escaped; -1 when there is none."""
    while True:
        q = data.rfind(b'"', 0, pos) if back else data.find(b'"', pos)
        if q < 0:
            return -1
        k = q
        while k > 0 and data[k - 1] == 0x5C:  # backslash
            k -= 1
        if (q - k) % 2 == 0:
            return q
        pos = q if back else q + 1


class _Oversized(bytes):
    """The start of a record over max_record_bytes (all of it that is kept), with the reject reason."""

    reason: str


_TOKEN_END = re.compile(rb'[\s,:"{}\[\]][^\s,:"{}\[\]]*\Z')


def _oversized(data: bytes, size: int, limit: int, at_least: bool = False) -> _Oversized:
    """The record's first REJECT_RAW_LIMIT bytes, cut back to the end of a token, so the redactor
    sees no half secret at the cut."""
    head = data[:REJECT_RAW_LIMIT]
    m = _TOKEN_END.search(head)
    head = head[:m.start() + 1] if m else b""
    out = _Oversized(head)
    out.reason = too_big(size, limit, at_least=at_least)
    return out


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
            yield Record(location, line, data=bytes(data), error=data.reason) if data.__class__ is _Oversized \
                else _parse(location, line, data)
            continue
        if c.counts:
            red.note(location, c.counts, c.paths, c.strings)
        if data.__class__ is _Oversized:
            yield Record(location, line, data=c.data, error=data.reason)
            continue
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


def _lines(path: Path, red: Redactions, max_bytes: Optional[int] = None) -> Iterator[Record]:
    with open(path, "rb") as f:
        if not max_bytes:
            lines = ((f"line {n}", n, line.rstrip(b"\r\n")) for n, line in enumerate(f, start=1) if line.strip())
        else:
            lines = _bounded_lines(f, max_bytes)
        yield from _batched(lines, red)


def _bounded_lines(f, limit: int) -> Iterator[tuple[str, int, bytes]]:
    """(line N, N, bytes) for each non-blank line; a line over `limit` bytes is read only up to
    the limit (the rest is skipped a chunk at a time) and comes as an _Oversized start."""
    readline = f.readline
    n = 0
    while line := readline(limit + 2):
        n += 1
        if len(line) == limit + 2 and line[-1:] != b"\n":  # the line goes on: skip the rest unread
            size = len(line)
            while chunk := readline(1 << 20):
                size += len(chunk)
                if chunk[-1:] == b"\n":
                    size -= 1
                    break
            yield f"line {n}", n, _oversized(line, size, limit)
            continue
        data = line.rstrip(b"\r\n")
        if len(data) > limit:
            yield f"line {n}", n, _oversized(data, len(data), limit)
        elif line.strip():
            yield f"line {n}", n, data


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


_STRING_BODY = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.S)


def _skip(w: _Window, pos: int) -> tuple[Optional[int], int]:
    """Move past the value that starts at `pos` a window at a time, without keeping it: its end in
    w.buf (None when the file ends inside it) and its size in characters."""
    base = -pos  # characters of the value in windows already dropped, less its offset in the first
    depth, in_string = 0, False
    scalar = w.buf[pos] not in '[{"'
    while True:
        buf, n = w.buf, len(w.buf)
        if scalar:
            pos = _SCALAR.match(buf, pos).end()
            if pos < n:
                return pos, base + pos
        while pos < n and not scalar:
            if in_string:
                pos = _STRING_BODY.match(buf, pos).end()
                if pos >= n or buf[pos] == "\\":  # goes on in the next window (an escape waits for its character)
                    break
                pos += 1
                in_string = False
                if depth == 0:
                    return pos, base + pos
                continue
            pos = _PLAIN.match(buf, pos).end()
            if pos >= n:
                break
            c = buf[pos]
            pos += 1
            if c == '"':
                in_string = True
                continue
            depth += 1 if c in "[{" else -1
            if depth <= 0:
                return pos, base + pos
        w.pos = pos
        base += pos
        if not w.more():
            return None, base + len(w.buf)
        pos = w.pos


def _guess(buf: str, start: int) -> Optional[int]:
    """The end of the object at `start`, guessed from how arrays of runs are laid out (one element
    per line, or pretty-printed with the closing brace at the element's indentation) and proved by
    orjson reading exactly that slice: a JSON object is never the prefix of a longer one, so a slice
    that parses is the element. None when no guess holds (the decoder decides). Reading the element
    with orjson instead of finding its end with json's decoder (which builds it only to throw it
    away) is the array's share of the ingest speed-up (bench/ingest.py)."""
    eol = buf.find("\n", start)
    if buf[start] != "{" or eol == -1:
        return None
    line = buf[start:eol].rstrip()  # one element per line
    if line.endswith((",", "]")):
        line = line[:-1].rstrip()
    if line.endswith("}") and _parses(buf[start:start + len(line)]):
        return start + len(line)
    indent = buf[buf.rfind("\n", 0, start) + 1:start]
    if not indent.strip(" \t"):  # pretty-printed: "}" alone at the element's indentation
        at = buf.find("\n" + indent + "}", eol - 1)
        if at != -1 and _parses(buf[start:at + len(indent) + 2]):
            return at + len(indent) + 2
    return None


def _parses(text: str) -> bool:
    try:
        orjson.loads(text.encode("utf-8", "surrogateescape"))  # (orjson reads bytes faster than str)
    except orjson.JSONDecodeError:
        return False
    return True


def _array_items(w: _Window, limit: Optional[int] = None) -> Iterator[tuple[str, Optional[int], bytes]]:
    """(index N, None, bytes) for each element of the array whose '[' is at w.pos. An element over
    `limit` bytes comes as an _Oversized start; past `limit` characters it is skipped, not read."""
    w.pos += 1
    index = misses = 0
    while True:
        w.pos = _SEPARATOR.match(w.buf, w.pos).end()
        if w.pos >= len(w.buf):
            if not w.more():
                return  # the closing bracket is missing, but no element is
            continue
        if w.buf[w.pos] == "]":
            return
        start = w.pos
        end = _guess(w.buf, start) if misses < 8 else None  # a file laid out otherwise stops guessing
        misses = 0 if end is not None else misses + 1
        try:
            if end is None:
                end = _DECODER.raw_decode(w.buf, start)[1]
                if end >= len(w.buf) and not w.eof:  # a number may go on in the next window
                    w.more()
                    continue
        except (json.JSONDecodeError, RecursionError):
            end = _extent(w.buf, start)
            if end is None:
                if limit and len(w.buf) - start > limit:  # over the limit whatever its bytes: skip the rest
                    head = w.buf[start:start + REJECT_RAW_LIMIT].encode("utf-8", "surrogateescape")
                    end, size = _skip(w, start)
                    yield f"index {index}", None, _oversized(head, size, limit, at_least=end is None)
                    if end is None:
                        return
                    w.pos = end
                    index += 1
                    continue
                grow = 2 * (len(w.buf) - start)  # geometrically: a 50 MB record is read a few times, not 50
                if w.more(min(grow, limit) if limit else grow):
                    continue
                w.truncated = f"index {index}"
                yield w.truncated, None, w.buf[start:].encode("utf-8", "surrogateescape")
                return
        data = w.buf[start:end].encode("utf-8", "surrogateescape")
        yield f"index {index}", None, _oversized(data, len(data), limit) if limit and len(data) > limit else data
        w.pos = end
        index += 1


def _array(path: Path, red: Redactions, max_bytes: Optional[int] = None) -> Iterator[Record]:
    with open(path, "rb") as f:
        w = _Window(f)
        w.more()
        w.pos = _SEPARATOR.match(w.buf, w.pos).end()
        for record in _batched(_array_items(w, max_bytes), red):
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


def _first_is_message(path: Path, max_bytes: Optional[int] = None) -> bool:
    """Whether a JSON array file's first element is a chat message (so the file is one run)."""
    with open(path, "rb") as f:
        w = _Window(f)
        w.more()
        w.pos = _SEPARATOR.match(w.buf, w.pos).end()
        for _, _, data in _array_items(w, max_bytes):
            if data.__class__ is _Oversized:
                return False
            try:
                first = orjson.loads(data)
            except orjson.JSONDecodeError:
                return False
            return isinstance(first, dict) and "role" in first
    return False


def read_records(path: Path, red: Redactions, max_bytes: Optional[int] = None) -> Iterator[Record]:
    """Yield the file's records. JSON Lines and JSON arrays of runs are streamed; any other JSON
    file (one object, or one run as a bare message list) is parsed whole, unless it is bigger than
    `max_bytes` (ingest.max_record_bytes): then it is one oversized record, an error."""
    if path.suffix.lower() in LINE_SUFFIXES:
        yield from _lines(path, red, max_bytes)
        return
    head = _head(path)
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"[") and not _first_is_message(path, max_bytes):
        yield from _array(path, red, max_bytes)
        return
    first, _, rest = stripped.partition(b"\n")
    if not stripped.startswith(b"[") and rest.strip() and _first_line_is_json(first):
        yield from _lines(path, red, max_bytes)  # JSON Lines under a .json name
        return
    size = path.stat().st_size
    if max_bytes and size > max_bytes:
        oversized = _oversized(head, size, max_bytes)
        yield Record("file", None, data=red.redact_batch([bytes(oversized)], ["file"])[0], error=oversized.reason)
        return
    data = path.read_bytes()
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        if _first_line_is_json(data):
            yield from _lines(path, red, max_bytes)
        else:
            cleaned = red.redact_batch([data[:REJECT_RAW_LIMIT]], ["file"])[0]
            yield Record("file", None, data=cleaned, error=_reason(data, e))
        return
    del data
    if isinstance(value, list) and not is_message_list(value):
        yield from _values(value, red)
    else:
        yield from _values([value], red)
