"""Canonical serialisation and content hashes: the same content always gives the same id."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def canonical_json(value: Any) -> bytes:
    """Sorted keys, compact separators, UTF-8: the bytes every hash in memkit is taken of."""
    return orjson.dumps(value, option=_OPTS, default=str)


def content_hash(value: Any, length: int = 64) -> str:
    """sha256 of the canonical JSON of `value`, hex, truncated to `length` characters."""
    return hashlib.sha256(canonical_json(value)).hexdigest()[:length]


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
