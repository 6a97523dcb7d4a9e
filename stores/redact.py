"""Secret redaction, applied to a record's JSON text before anything is parsed from it or stored.

Working on the serialized text means every derived field (steps, tool arguments, the raw copy)
is redacted by construction. Replacements contain no quote or backslash, so JSON stays valid.
"""

from __future__ import annotations

import re
from collections import Counter

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

_PATTERN = re.compile("|".join(f"(?P<g{i}>{p})" for i, (_, p) in enumerate(DETECTORS)))
_NAMES = {f"g{i}": name for i, (name, _) in enumerate(DETECTORS)}
# A cheap pre-check: most records contain none of these substrings and skip the big regex.
_HINTS = ("sk-", "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "AIza", "eyJ", "earer", "://", "PRIVATE KEY")


def redact(text: str) -> tuple[str, Counter]:
    """Return the text with secrets replaced by `[REDACTED:detector]`, and what was found."""
    found: Counter = Counter()
    if not any(h in text for h in _HINTS):
        return text, found

    def _sub(m: re.Match) -> str:
        name = _NAMES[m.lastgroup]
        found[name] += 1
        return f"[REDACTED:{name}]"

    return _PATTERN.sub(_sub, text), found
