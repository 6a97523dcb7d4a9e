"""Secret redaction, applied to a record's JSON bytes before anything is parsed from it or stored.

Working on the serialized record means every derived field (steps, tool arguments, the raw copy)
is redacted by construction. Replacements contain no quote or backslash, so JSON stays valid.
Records are screened in batches by one RE2 pass (pyarrow) for the substrings every detector
needs; only the few that match go through the full Python patterns.
"""

from __future__ import annotations

import re
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

# (detector, pattern). Patterns never cross a JSON string boundary (no `"` inside).
DETECTORS: list[tuple[str, str]] = [
    ("private-key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----[^\"]*?-----END [A-Z ]*PRIVATE KEY-----"),
    ("anthropic-key", r"\bsk-ant-[A-Za-z0-9_\-]{20,}"),
    ("openai-key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    ("aws-access-key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("github-token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ("slack-token", r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
    ("google-api-key", r"\bAIza[0-9A-Za-z_\-]{35}"),
    ("jwt", r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    ("bearer-token", r"(?:(?<=Bearer )|(?<=bearer )|(?<=BEARER ))[A-Za-z0-9_\-\.=]{16,}"),
    ("url-password", r"(?<=://)[^/\s:@\"]+:[^/\s@\"]+(?=@)"),
]
# Substrings at least one of which every detector's match contains (RE2 syntax).
SCREEN = r"sk-|AKIA|ASIA|gh[pousr]_|github_pat_|xox|AIza|eyJ|[Bb]earer |BEARER |://|PRIVATE KEY"

_JOINED = "|".join(f"(?P<g{i}>{p})" for i, (_, p) in enumerate(DETECTORS))
_PATTERN = re.compile(_JOINED)
_PATTERN_B = re.compile(_JOINED.encode())
_NAMES = {f"g{i}": name for i, (name, _) in enumerate(DETECTORS)}


def _substitute(pattern, data, found: Counter, marker):
    def _sub(m):
        name = _NAMES[m.lastgroup]
        found[name] += 1
        return marker(name)

    return pattern.sub(_sub, data)


def redact(text: str) -> tuple[str, Counter]:
    """The text with secrets replaced by `[REDACTED:detector]`, and what was found."""
    found: Counter = Counter()
    return _substitute(_PATTERN, text, found, lambda n: f"[REDACTED:{n}]"), found


def redact_bytes(data: bytes) -> tuple[bytes, Counter]:
    """`redact` for raw bytes, so a record that is not even valid UTF-8 is redacted too."""
    found: Counter = Counter()
    return _substitute(_PATTERN_B, data, found, lambda n: f"[REDACTED:{n}]".encode()), found


def redact_batch(items: list[bytes], found: Counter) -> list[bytes]:
    """Redact a batch of records, screening them all in one vectorised pass first."""
    if not items:
        return items
    flags = pc.match_substring_regex(pa.array(items, pa.binary()), SCREEN).to_pylist()
    out = list(items)
    for i, flagged in enumerate(flags):
        if flagged:
            out[i], hits = redact_bytes(items[i])
            found.update(hits)
    return out
