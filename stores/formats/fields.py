"""Field helpers shared by readers: outcomes, text content, typed optional fields."""

from __future__ import annotations

from typing import Any, Optional

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
