"""SWE-agent trajectories (`INSTANCE.traj`): {trajectory, history, info, replay_config, environment}.

The steps come from `history`, the chat the model saw (demonstrations, `is_demo`, are left out),
or from `trajectory` (action/observation pairs) when a file has no history. With function
calling, tool calls are the model's (`bash`, `str_replace_editor`, ...); with text actions, each
action is a call named by its first word (the ACI command: `open`, `edit`, `submit`, or a shell
program) with the action as `{"command": ...}`, and the observation that answers it is its tool
result (the template's `OBSERVATION:` label dropped so error prefixes match).

SWE-agent does not know whether a patch resolves its issue: the outcome stays unknown unless an
evaluation report is given with `--outcomes`. The instance id (the task) comes from the replay
config's problem statement.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import orjson

from memkit.model import Run, Step, ToolCall
from memkit.stores.formats import ReadContext, RecordError, RecordReader
from memkit.stores.formats._checks import storable
from memkit.stores.formats.fields import number, opt_str, text_of
from memkit.stores.formats.openai_chat import parse_arguments

_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
_LABEL = re.compile(r"^\s*observation:[ \t]*\n?", re.IGNORECASE)


def command_name(action: str) -> str:
    words = action.strip().split(None, 1)
    return words[0] if words else "noop"


def strip_label(text: Optional[str]) -> Optional[str]:
    return _LABEL.sub("", text, count=1) if text else text


def tool_result(text: Optional[str], ctx: ReadContext, name: Optional[str], call_id: Optional[str]) -> Step:
    text = strip_label(text)
    return Step(role="tool", text=text, name=name, tool_call_id=call_id,
                is_error=bool(text) and text.lstrip().startswith(ctx.error_prefixes))


def openai_tool_calls(calls: Any, where: str) -> list[ToolCall]:
    if not isinstance(calls, list):
        raise RecordError(f"{where}: tool_calls must be a list")
    out = []
    for j, c in enumerate(calls):
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise RecordError(f"{where}: tool call {j} has no function name")
        args, raw = parse_arguments(fn.get("arguments"))
        out.append(ToolCall(name=fn["name"], arguments=storable(args, f"{where}: tool call {j} arguments"),
                            arguments_raw=raw, call_id=opt_str(c.get("id"))))
    return out


def steps_from_history(history: list, ctx: ReadContext) -> tuple[list[Step], int]:
    """Steps from SWE-agent's history, and how many demonstration messages were left out."""
    steps: list[Step] = []
    names: dict[str, str] = {}
    pending: Optional[str] = None  # the text action awaiting its observation
    demos = 0
    for i, m in enumerate(history):
        where = f"history {i}"
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RecordError(f"{where}: expected an object with a string 'role'")
        if m.get("is_demo"):
            demos += 1
            continue
        role = _ROLES.get(m["role"])
        if role is None:
            raise RecordError(f"{where}: unknown role {m['role']!r}")
        text = text_of(m.get("content"), where)
        if role == "assistant":
            step = Step(role="assistant", text=text)
            thinking = m.get("thinking_blocks")
            if isinstance(thinking, list):
                step.reasoning = "\n".join(b["thinking"] for b in thinking
                                           if isinstance(b, dict) and isinstance(b.get("thinking"), str)) or None
            if m.get("tool_calls"):
                step.tool_calls = openai_tool_calls(m["tool_calls"], where)
                names.update((c.call_id, c.name) for c in step.tool_calls if c.call_id)
                pending = None
            elif isinstance(m.get("action"), str) and m["action"].strip():
                name = command_name(m["action"])
                step.tool_calls = [ToolCall(name=name, arguments={"command": m["action"]})]
                pending = name
            else:
                pending = None
            steps.append(step)
        elif role == "tool":
            ids = m.get("tool_call_ids")
            call_id = opt_str(ids[0]) if isinstance(ids, list) and ids else opt_str(m.get("tool_call_id"))
            steps.append(tool_result(text, ctx, names.get(call_id or ""), call_id))
            pending = None
        elif role == "user" and pending is not None:
            steps.append(tool_result(text, ctx, pending, None))  # the observation of a text action
            pending = None
        else:
            steps.append(Step(role=role, text=text))
            pending = None
    return steps, demos


def steps_from_trajectory(trajectory: list, ctx: ReadContext) -> list[Step]:
    steps: list[Step] = []
    for i, t in enumerate(trajectory):
        where = f"trajectory {i}"
        if not isinstance(t, dict):
            raise RecordError(f"{where}: expected an object, not {type(t).__name__}")
        action = t.get("action")
        if action is not None and not isinstance(action, str):
            raise RecordError(f"{where}: action must be text, not {type(action).__name__}")
        response = t.get("response") if isinstance(t.get("response"), str) else t.get("thought")
        step = Step(role="assistant", text=opt_str(response))
        if action and action.strip():
            step.tool_calls = [ToolCall(name=command_name(action), arguments={"command": action})]
        steps.append(step)
        if action and action.strip():
            observation = t.get("observation")
            if observation is not None and not isinstance(observation, str):
                raise RecordError(f"{where}: observation must be text, not {type(observation).__name__}")
            steps.append(tool_result(observation, ctx, step.tool_calls[0].name, None))
    return steps


def replay_config(record: dict) -> dict:
    rc = record.get("replay_config")
    if isinstance(rc, str):
        try:
            rc = orjson.loads(rc)
        except orjson.JSONDecodeError:
            return {}
    return rc if isinstance(rc, dict) else {}


def _dig(value: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(k)
    return value


def _int(v: Any) -> Optional[int]:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


class SWEAgentReader(RecordReader):
    name = "swe-agent"
    version = "1"
    priority = 30
    description = "SWE-agent .traj: {trajectory, history, info.exit_status, info.model_stats}; outcome via --outcomes"

    def matches(self, record: Any) -> bool:
        if not isinstance(record, dict) or not isinstance(record.get("trajectory"), list):
            return False
        if not isinstance(record.get("info"), dict) and not isinstance(record.get("history"), list):
            return False
        first = record["trajectory"][0] if record["trajectory"] else {}
        return isinstance(first, dict) and (not first or "action" in first or "observation" in first)

    def to_run(self, record: Any, ctx: ReadContext) -> Run:
        if not isinstance(record, dict):
            raise RecordError(f"expected a SWE-agent trajectory object, not {type(record).__name__}")
        trajectory, history = record.get("trajectory"), record.get("history")
        if not isinstance(trajectory, list):
            raise RecordError("'trajectory' must be a list")
        if history is not None and not isinstance(history, list):
            raise RecordError(f"'history' must be a list, not {type(history).__name__}")
        info = record.get("info", {})
        if not isinstance(info, dict):
            raise RecordError(f"'info' must be an object, not {type(info).__name__}")
        demos = 0
        if history:
            steps, demos = steps_from_history(history, ctx)
        else:
            steps = steps_from_trajectory(trajectory, ctx)
        if not steps:
            raise RecordError("the trajectory has no steps")
        stats = info.get("model_stats") if isinstance(info.get("model_stats"), dict) else {}
        rc = replay_config(record)
        instance = opt_str(_dig(rc, "problem_statement", "id")) or opt_str(record.get("instance_id"))
        submission = info.get("submission")
        metadata = {k: v for k, v in {
            "exit_status": info.get("exit_status"),
            "has_submission": bool(submission) if submission is not None else None,
            "model_stats": stats or None,
            "swe_agent_version": info.get("swe_agent_version"),
            "environment": record.get("environment"),
            "attempts": len(record["attempts"]) if isinstance(record.get("attempts"), list) else None,
            "demonstration_messages": demos or None,
            "review": info.get("review"),
        }.items() if v is not None}
        storable(metadata, "info")
        return Run(
            steps=steps,
            raw=record,
            external_id=instance,
            task_id=instance,
            task_text=next((s.text for s in steps if s.role == "user" and s.text), None)
            or opt_str(_dig(rc, "problem_statement", "text")),
            agent="swe-agent",
            model=opt_str(_dig(rc, "agent", "model", "name")),
            outcome="unknown",
            cost_usd=number(stats.get("instance_cost"), "info.model_stats.instance_cost"),
            tokens_in=_int(stats.get("tokens_sent")),
            tokens_out=_int(stats.get("tokens_received")),
            metadata=metadata,
        )


READER = SWEAgentReader()
