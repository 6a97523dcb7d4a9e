"""Reading a file as records: a JSON array (index N), one JSON value, or JSON Lines (line N).

Each record comes with its redacted JSON bytes, so the raw copy that is stored and everything
parsed from it has passed the redactor. JSON Lines are streamed in chunks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Optional

import orjson

from memkit.stores.redact import redact_batch

LINE_SUFFIXES = {".jsonl", ".ndjson"}
CHUNK = 1024  # records screened for secrets at once
REJECT_RAW_LIMIT = 65536


@dataclass(slots=True)
class Record:
    location: str
    line: Optional[int]
    value: Any = None
    data: bytes = b""  # the record's redacted JSON bytes (on errors: the bytes as read, redacted)
    error: Optional[str] = None  # set when the record is not valid JSON


@dataclass
class Redactions:
    counts: Counter = field(default_factory=Counter)


def _parse(location: str, line: Optional[int], data: bytes) -> Record:
    try:
        return Record(location, line, orjson.loads(data), data)
    except orjson.JSONDecodeError as e:
        msg = str(e)
        reason = _utf8_error(data) if "UTF-8" in msg else f"not valid JSON ({msg.split(':', 1)[0]})"
        return Record(location, line, data=data[:REJECT_RAW_LIMIT], error=reason)


def _utf8_error(data: bytes) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not valid UTF-8 (byte {e.start})"
    return "not valid UTF-8"


def _lines(path: Path, red: Redactions) -> Iterator[Record]:
    with open(path, "rb") as f:
        numbered = ((n, line.rstrip(b"\r\n")) for n, line in enumerate(f, start=1) if line.strip())
        while chunk := list(islice(numbered, CHUNK)):
            cleaned = redact_batch([data for _, data in chunk], red.counts)
            for (n, _), data in zip(chunk, cleaned):
                yield _parse(f"line {n}", n, data)


def _first_line_is_json(data: bytes) -> bool:
    first = data.lstrip().split(b"\n", 1)[0]
    try:
        orjson.loads(first)
    except orjson.JSONDecodeError:
        return False
    return True


def is_message_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def _values(values: list, red: Redactions) -> Iterator[Record]:
    for start in range(0, len(values), CHUNK):
        chunk = values[start:start + CHUNK]
        dumped = [orjson.dumps(v) for v in chunk]
        cleaned = redact_batch(dumped, red.counts)
        for i, (value, before, after) in enumerate(zip(chunk, dumped, cleaned), start=start):
            yield Record(f"index {i}", None, value if after is before else orjson.loads(after), after)


def read_records(path: Path, red: Redactions) -> Iterator[Record]:
    """Yield the file's records; JSON Lines are streamed, a whole-JSON file is parsed once."""
    if path.suffix.lower() in LINE_SUFFIXES:
        yield from _lines(path, red)
        return
    data = path.read_bytes()
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        if _first_line_is_json(data):
            yield from _lines(path, red)  # JSON Lines under a .json name
        else:
            reason = _utf8_error(data) if "UTF-8" in str(e) else f"not valid JSON ({e})"
            cleaned = redact_batch([data[:REJECT_RAW_LIMIT]], red.counts)[0]
            yield Record("file", None, data=cleaned, error=reason)
        return
    del data
    if isinstance(value, list) and not is_message_list(value):
        yield from _values(value, red)
    else:
        yield from _values([value], red)
