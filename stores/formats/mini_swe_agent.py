"""mini-swe-agent trajectories (`INSTANCE.traj.json`): {info, messages, trajectory_format: "mini-swe-agent-1[.1]"}.

Every command is a `bash` tool call: the model's own tool calls (tool-calling models), else the
actions mini-swe-agent parsed (`extra.actions`, 2.x), else the single fenced bash block of the
message (1.x). The message answering a command is its tool result, an error when the command's
return code is not 0. The closing `exit` message is not a step; its status and submission are
kept in metadata. The outcome is unknown unless an evaluation report is given with `--outcomes`.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from memkit.model import Run, Step, ToolCall
from memkit.stores.formats import ReadContext, RecordError, RecordReader
from memkit.stores.formats._checks import storable
from memkit.stores.formats.fields import number, opt_str, text_of
from memkit.stores.formats.swe_agent import openai_tool_calls

_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
_FENCED = re.compile(r"```(?:bash|mswea_bash_command)\s*\n(.*?)\n```", re.DOTALL)
_RETURNCODE = re.compile(r"<returncode>\s*(-?\d+)\s*</returncode>")


def _returncode(m: dict, text: Optional[str]) -> Optional[int]:
    extra = m.get("extra")
    rc = extra.get("returncode") if isinstance(extra, dict) else None
    if isinstance(rc, int) and not isinstance(rc, bool):
        return rc
    found = _RETURNCODE.search(text or "")
    return int(found.group(1)) if found else None


def _commands(m: dict, text: Optional[str]) -> list[ToolCall]:
    extra = m.get("extra")
    actions = extra.get("actions") if isinstance(extra, dict) else None
    if isinstance(actions, list):
        return [ToolCall(name="bash", arguments={"command": a["command"]}, call_id=opt_str(a.get("tool_call_id")))
                for a in actions if isinstance(a, dict) and isinstance(a.get("command"), str)]
    blocks = _FENCED.findall(text or "")
    return [ToolCall(name="bash", arguments={"command": blocks[0].strip()})] if len(blocks) == 1 else []


def steps_from_messages(messages: Any, ctx: ReadContext) -> tuple[list[Step], Optional[dict]]:
    """Steps, and the closing exit message's `extra` (status, submission) when there is one."""
    if not isinstance(messages, list):
        raise RecordError(f"messages must be a list, not {type(messages).__name__}")
    steps: list[Step] = []
    exit_extra: Optional[dict] = None
    awaiting = 0  # commands of the last assistant message not yet answered
    for i, m in enumerate(messages):
        where = f"message {i}"
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RecordError(f"{where}: expected an object with a string 'role'")
        if m["role"] == "exit":
            extra = m.get("extra")
            exit_extra = extra if isinstance(extra, dict) else {"submission": opt_str(m.get("content"))}
            continue
        role = _ROLES.get(m["role"])
        if role is None:
            raise RecordError(f"{where}: unknown role {m['role']!r}")
        text = text_of(m.get("content"), where)
        if role == "assistant":
            step = Step(role="assistant", text=text)
            if isinstance(m.get("reasoning_content"), str):
                step.reasoning = m["reasoning_content"]
            step.tool_calls = openai_tool_calls(m["tool_calls"], where) if m.get("tool_calls") else _commands(m, text)
            for c in step.tool_calls:
                storable(c.arguments, f"{where}: command")
            awaiting = len(step.tool_calls)
            steps.append(step)
        elif role == "tool" or (role == "user" and awaiting and _returncode(m, text) is not None):
            rc = _returncode(m, text)
            steps.append(Step(role="tool", text=text, name="bash", tool_call_id=opt_str(m.get("tool_call_id")),
                              is_error=rc != 0 if rc is not None
                              else bool(text) and text.lstrip().startswith(ctx.error_prefixes)))
            awaiting = max(awaiting - 1, 0)
        else:
            steps.append(Step(role=role, text=text))
            awaiting = 0
    return steps, exit_extra


class MiniSWEAgentReader(RecordReader):
    name = "mini-swe-agent"
    version = "1"
    priority = 30
    description = "mini-swe-agent trajectory JSON: {info, messages, trajectory_format: mini-swe-agent-1}; outcome via --outcomes"

    def matches(self, record: Any) -> bool:
        if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
            return False
        fmt = record.get("trajectory_format")
        info = record.get("info")
        return (isinstance(fmt, str) and fmt.startswith("mini-swe-agent")) or (
            isinstance(info, dict) and "mini_version" in info)

    def to_run(self, record: Any, ctx: ReadContext) -> Run:
        if not isinstance(record, dict):
            raise RecordError(f"expected a mini-swe-agent trajectory object, not {type(record).__name__}")
        info = record.get("info", {})
        if not isinstance(info, dict):
            raise RecordError(f"'info' must be an object, not {type(info).__name__}")
        steps, exit_extra = steps_from_messages(record.get("messages"), ctx)
        if not steps:
            raise RecordError("messages is empty")
        stats = info.get("model_stats") if isinstance(info.get("model_stats"), dict) else {}
        config = info.get("config") if isinstance(info.get("config"), dict) else {}
        model = config.get("model") if isinstance(config.get("model"), dict) else {}
        exit_extra = exit_extra or {}
        status = info.get("exit_status") or exit_extra.get("exit_status")
        submission = info.get("submission", exit_extra.get("submission"))
        metadata = {k: v for k, v in {
            "exit_status": status,
            "has_submission": bool(submission) if submission is not None else None,
            "model_stats": stats or None,
            "mini_version": info.get("mini_version"),
            "trajectory_format": record.get("trajectory_format"),
            "traceback": info.get("traceback") or exit_extra.get("traceback"),
        }.items() if v is not None}
        storable(metadata, "info")
        instance = opt_str(record.get("instance_id"))
        return Run(
            steps=steps,
            raw=record,
            external_id=instance,
            task_id=instance,
            task_text=next((s.text for s in steps if s.role == "user" and s.text), None),
            agent="mini-swe-agent",
            model=opt_str(model.get("model_name")),
            outcome="unknown",
            cost_usd=number(stats.get("instance_cost"), "info.model_stats.instance_cost"),
            metadata=metadata,
        )


READER = MiniSWEAgentReader()
