"""Field helpers shared by readers: outcomes, text content, typed optional fields."""

from __future__ import annotations

from typing import Any, Optional

import orjson

from memkit.stores.formats import ReadContext, RecordError

_OUTCOME_WORDS = {
    "success": "success", "succeeded": "success", "pass": "success", "passed": "success", "resolved": "success",
    "correct": "success", "true": "success",
    "failure": "failure", "failed": "failure", "fail": "failure", "error": "failure", "incorrect": "failure",
    "false": "failure", "unresolved": "failure",
    "partial": "partial", "unknown": "unknown",
}


def outcome_from(ctx: ReadContext, reward: Any = None, success: Any = None, outcome: Any = None) -> tuple[str, Optional[float]]:
    """Outcome and numeric reward from whichever of `outcome`, `success`, `reward` a record has."""
    r = number(reward, "reward")
    if outcome is not None:
        word = _OUTCOME_WORDS.get(str(outcome).strip().lower())
        if word is None:
            raise RecordError(f"outcome {outcome!r} is not one of success, failure, partial, unknown")
        return word, r
    if success is not None:
        if not isinstance(success, bool):
            raise RecordError(f"success must be true or false, not {type(success).__name__}")
        return ("success" if success else "failure"), r
    if r is None:
        return "unknown", None
    if r >= ctx.success_threshold:
        return "success", r
    if r <= ctx.failure_threshold:
        return "failure", r
    return "partial", r


def number(value: Any, field: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"{field} must be a number, not {type(value).__name__}")
    return float(value)


def opt_str(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return None
    return str(value)


def text_of(content: Any, where: str) -> Optional[str]:
    """Message content as text: a string, or a list of parts whose text parts are joined."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                t = part.get("text")
                if isinstance(t, str):
                    parts.append(t)
                elif isinstance(part.get("content"), str):
                    parts.append(part["content"])
        return "\n".join(parts)
    if isinstance(content, (int, float)):
        return str(content)
    raise RecordError(f"{where}: content must be text or a list of parts, not {type(content).__name__}")


# orjson, which writes every stored row, refuses values nested deeper than 254 levels; readers
# reject deeper records up front, leaving room for the rows and hashes that wrap a value.
MAX_NESTING = 200
_WRAP = 254 - MAX_NESTING


def dumps_checked(value: Any, where: str) -> bytes:
    """orjson.dumps(value), or RecordError when the value is nested more than MAX_NESTING levels deep."""
    wrapped = value
    for _ in range(_WRAP):
        wrapped = [wrapped]
    try:
        data = orjson.dumps(wrapped)
    except orjson.JSONEncodeError as e:
        if "Recursion" in str(e):
            raise RecordError(f"{where}: nested more than {MAX_NESTING} levels deep") from None
        raise RecordError(f"{where}: cannot be stored as JSON ({e})") from None
    return data[_WRAP:-_WRAP]


def check_nesting(value: Any, where: str) -> None:
    """RecordError when `value` is nested more than MAX_NESTING levels deep."""
    wrapped = value
    for _ in range(_WRAP):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        dumps_checked(value, where)  # raises with the reason


def join_json(parts: list[bytes]) -> bytes:
    """A JSON array of already-serialized values (e.g. the redacted lines of one session)."""
    return b"[" + b",".join(parts) + b"]"


def may_nest_deeply(data: bytes) -> bool:
    """Whether serialized JSON could be nested more than MAX_NESTING deep (a cheap test before the real one)."""
    return data.count(b"[") + data.count(b"{") > MAX_NESTING
