"""Reading a file as records: a JSON array (index N), one JSON value, or JSON Lines (line N).

Each record comes with its redacted JSON text, so the raw copy that is stored and everything
parsed from it has passed the redactor.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import orjson

from memkit.stores.redact import redact

LINE_SUFFIXES = {".jsonl", ".ndjson"}


@dataclass(slots=True)
class Record:
    location: str
    line: Optional[int]
    value: Any = None
    text: str = ""  # redacted JSON text of the record
    error: Optional[str] = None  # set when the record is not valid JSON
    raw: bytes = b""  # on errors: the bytes as read (redacted), for `rejects`


@dataclass
class Redactions:
    counts: Counter = field(default_factory=Counter)


def _json_error(e: Exception) -> str:
    return f"not valid JSON ({str(e).split(':', 1)[0]})"


def _from_text(location: str, line: Optional[int], data: bytes, red: Redactions) -> Record:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return Record(location, line, error=f"not valid UTF-8 (byte {e.start})", raw=data[:65536])
    text, found = redact(text)
    red.counts.update(found)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        return Record(location, line, error=_json_error(e), raw=text.encode()[:65536])
    return Record(location, line, value=value, text=text)


def _from_value(location: str, value: Any, red: Redactions) -> Record:
    text = orjson.dumps(value).decode()
    redacted, found = redact(text)
    if found:
        red.counts.update(found)
        value = orjson.loads(redacted)
    return Record(location, None, value=value, text=redacted)


def _lines(path: Path, red: Redactions) -> Iterator[Record]:
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                yield _from_text(f"line {n}", n, line.rstrip(b"\r\n"), red)


def _first_line_is_json(data: bytes) -> bool:
    first = data.lstrip().split(b"\n", 1)[0]
    try:
        orjson.loads(first)
    except orjson.JSONDecodeError:
        return False
    return True


def is_message_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


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
            yield Record("file", None, error=f"not valid JSON ({e})", raw=data[:65536])
        return
    if isinstance(value, list) and not is_message_list(value):
        for i, item in enumerate(value):
            yield _from_value(f"index {i}", item, red)
    else:
        yield _from_value("index 0", value, red)
