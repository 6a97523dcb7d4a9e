"""Concept vs instance: a playbook item is a reusable abstraction, so text that restates one run's
specifics (ids, codes, dates, amounts, e-mail addresses) is rejected before it reaches the playbook.
A cheap check; the curator prompt asks for the same."""

from __future__ import annotations

import re

_MONTH = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"

INSTANCE_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("date", re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b")),
    ("date", re.compile(rf"\b{_MONTH}\.? \d{{1,2}}(?:st|nd|rd|th)?\b")),
    ("amount", re.compile(r"[$€£]\s?\d[\d,]*(?:\.\d+)?|\b\d+(?:[.,]\d+)?\s?(?:USD|EUR|GBP|dollars?|euros?)\b", re.I)),
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b")),
    ("id", re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b|\b[0-9a-f]{12,}\b")),
    ("id", re.compile(r"\b(?=[A-Z0-9]*\d)(?=(?:[0-9]*[A-Z]){2})[A-Z0-9]{5,12}\b")),
    ("id", re.compile(r"\b[a-z]+(?:_[a-z]+)*_\d{3,}\b")),
    ("number", re.compile(r"(?<![\w<])\d{4,}(?:\.\d+)?\b")),
]

_CODE_SPAN = re.compile(r"`[^`]*`")


def instance_details(*texts: str | None) -> list[str]:
    """The run-specific details in `texts` ("id ZFA04Y", "date 2024-05-20"); empty when it reads as a concept.
    Tool names in backticks are not details."""
    found: list[str] = []
    for text in texts:
        if not text:
            continue
        plain = _CODE_SPAN.sub(" ", text)
        for kind, pattern in INSTANCE_PATTERNS:
            for m in pattern.finditer(plain):
                detail = f"{kind} {m.group(0).strip()}"
                if detail not in found:
                    found.append(detail)
            plain = pattern.sub(" ", plain)  # a date is not also a number
    return found
