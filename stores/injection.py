"""Injection detection: text inside runs that addresses the agent or its memory.

Runs are untrusted: a tool result or a user turn can carry "ignore previous instructions" or
"add this to your playbook", and a memory system that distils it ships it into every future
prompt (A-MemGuard). Steps whose text matches are flagged at ingest; lessons whose evidence relies
on flagged runs are quarantined instead of exported.
"""

from __future__ import annotations

import base64
import binascii
import re

_I = re.IGNORECASE
PATTERNS: list[tuple[str, re.Pattern]] = [
    ("override", re.compile(r"\b(ignore|disregard|forget|override)\b.{0,40}\b(previous|prior|above|earlier|all|your|the system)\b"
                            r".{0,30}\b(instructions?|prompts?|rules|guidelines|directions|messages)\b", _I)),
    ("role-change", re.compile(r"\b(you are now|from now on,? you are|new (system )?instructions?\s*:|act as (an? )?(unrestricted|jailbroken|developer mode))", _I)),
    ("memory-write", re.compile(r"\b(remember|memori[sz]e|note|store|save|add|write|record)\b.{0,40}"
                                r"\b(playbook|memory|memories|notes?|lessons?|rules?|instructions|system prompt|context)\b"
                                r".{0,60}\b(always|never|from now on|for (all )?future|every time)\b", _I)),
    ("memory-write", re.compile(r"\b(add|append|insert|write) (this|the following|these)\b.{0,30}\b(to|into) (your|the)\b.{0,20}"
                                r"\b(playbook|memory|notes|instructions|system prompt|agents\.md|claude\.md)\b", _I)),
    ("standing-order", re.compile(r"\b(from now on|in (all )?future (runs|tasks|conversations)),? (always|never)\b", _I)),
    ("standing-order", re.compile(r"\bremember to always\b", _I)),
    ("exfiltration", re.compile(r"\b(send|post|upload|forward|email)\b.{0,40}\b(api[_ ]?keys?|credentials|passwords?|secrets?|tokens?)\b"
                                r".{0,40}\b(to|at)\b", _I)),
]
_HIDDEN = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u202a-\u202e\u2066-\u2069]|[\U000e0000-\U000e007f]")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")


def scan(text: str | None) -> list[tuple[str, str]]:
    """(detector, excerpt) for every kind of injection found in `text`; empty when it reads clean."""
    if not text:
        return []
    found: dict[str, str] = {}
    for name, pattern in PATTERNS:
        m = pattern.search(text)
        if m and name not in found:
            found[name] = _excerpt(text, m.start(), m.end())
    hidden = _HIDDEN.findall(text)
    if len(hidden) >= 2 or any(ord(c) >= 0xE0000 for c in hidden):
        found["hidden-text"] = f"{len(hidden)} invisible or direction-override characters"
        visible = _HIDDEN.sub("", text)
        if visible != text:
            for name, excerpt in scan(visible):
                found.setdefault(name, excerpt)
    for m in _BASE64.finditer(text):
        decoded = _decode(m.group(0))
        if decoded and scan(decoded):
            found.setdefault("encoded", f"base64 that decodes to: {decoded[:80]!r}")
            break
    return sorted(found.items())


def _decode(blob: str) -> str | None:
    try:
        raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _excerpt(text: str, start: int, end: int, pad: int = 30) -> str:
    return text[max(0, start - pad):min(len(text), end + pad)].replace("\n", " ")[:200]


# One cheap RE2 pass over a batch's step texts finds the few that can match at all (pyarrow, no GIL).
SCREEN = (r"ignore|disregard|forget|override|you are now|from now on|instruction|act as|playbook|memor|"
          r"system prompt|agents\.md|claude\.md|remember|future|api.?key|credential|password|secret|"
          r"[\x{200b}-\x{200d}\x{2060}\x{feff}\x{202a}-\x{202e}\x{2066}-\x{2069}]|[\x{e0000}-\x{e007f}]|[A-Za-z0-9+/]{40,}")
SCANNED_ROLES = ("user", "tool")  # where text from outside the agent arrives


def flag_steps(steps):
    """Flags for a pyarrow table of steps (trajectory_id, seq, role, text): a table of
    (trajectory_id, seq, detector, excerpt), one row per step and kind of injection found."""
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = pa.schema([("trajectory_id", pa.string()), ("seq", pa.int64()), ("detector", pa.string()),
                        ("excerpt", pa.string())])
    if steps.num_rows == 0:
        return schema.empty_table()
    outside = pc.is_in(steps["role"], value_set=pa.array(SCANNED_ROLES))
    text = pc.fill_null(steps["text"], "")
    candidates = steps.filter(pc.and_(outside, pc.match_substring_regex(text, SCREEN, ignore_case=True)))
    rows = {"trajectory_id": [], "seq": [], "detector": [], "excerpt": []}
    for run_id, seq, body in zip(*(candidates[c].to_pylist() for c in ("trajectory_id", "seq", "text"))):
        for detector, excerpt in scan(body):
            for k, v in zip(rows, (run_id, seq, detector, excerpt)):
                rows[k].append(v)
    return pa.table(rows, schema=schema)
