"""Trace format readers: one module per format, one registry, detection by content.

A reader turns one parsed record (a JSON value) into a `Run`, or raises `RecordError` with a
one-line reason; the ingest loop turns that into a row in `rejects` and goes on.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from memkit.errors import UnknownFormat


class RecordError(ValueError):
    "A record that its reader cannot use; the message is the reason shown to the user."


class Reader(Protocol):
    name: str
    version: str
    description: str

    def matches(self, record: Any) -> bool:
        """Does this (first) record look like this format?"""

    def to_run(self, record: Any, ctx: "ReadContext"):
        """Return a memkit.model.Run, or raise RecordError."""


class ReadContext:
    """What readers need from the configuration."""

    def __init__(self, success_threshold: float = 1.0, failure_threshold: float = 0.0, error_prefixes=("Error",)):
        self.success_threshold = success_threshold
        self.failure_threshold = failure_threshold
        self.error_prefixes = tuple(error_prefixes)


def registry() -> dict[str, Reader]:
    from memkit.stores.formats import openai_chat, tau_bench

    # Order matters for detection: the most specific shape first.
    readers = [tau_bench.READER, openai_chat.READER]
    return {r.name: r for r in readers}


def get_reader(name: str) -> Reader:
    readers = registry()
    if name not in readers:
        raise UnknownFormat(f"unknown format {name!r}; known formats: {', '.join(readers)}")
    return readers[name]


def detect(record: Any, uri: str) -> Reader:
    for reader in registry().values():
        if reader.matches(record):
            return reader
    raise UnknownFormat(f"{uri}: not a trajectory file (tried formats: {', '.join(registry())})")


def detect_first(records, uri: str) -> Optional[Reader]:
    """The reader for the first parseable record; None when the file has none."""
    for rec in records:
        return detect(rec, uri)
    return None
