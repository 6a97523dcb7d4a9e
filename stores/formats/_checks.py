"""Checks the readers of this package's eval formats (Inspect, SWE-agent, mapped) share."""

from __future__ import annotations

from typing import Any

from memkit.stores.formats.fields import check_nesting, dumps_checked


def storable(value: Any, where: str) -> Any:
    """`value`, or RecordError when it is nested too deeply to be stored as JSON (see fields.check_nesting)."""
    check_nesting(value, where)
    return value


def dumps(value: Any, where: str) -> bytes:
    """orjson.dumps(value), or RecordError when it is nested too deeply."""
    return dumps_checked(value, where)


def json_error(data: bytes, error: Exception) -> str:
    """The one-line reason a JSON document could not be parsed."""
    msg = str(error)
    if "UTF-8" in msg:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            return f"not valid UTF-8 (byte {e.start})"
        return "not valid UTF-8"
    if "recursion" in msg or "depth limit" in msg:
        return "nested too deeply (more than 1024 levels)"
    return f"not valid JSON ({msg.split(':', 1)[0]})"


def redact_entries(redactions: Any, items: list[bytes], locations: list[str]) -> list[bytes]:
    """Pass the bytes of records a binary reader found (zip entries) through the file's redactor."""
    method = getattr(redactions, "redact_batch", None)
    if method is not None:  # the file's configured redactor, which also records where it redacted
        return method(items, locations)
    from memkit.stores.redact import redact_batch

    return redact_batch(items, redactions.counts)
