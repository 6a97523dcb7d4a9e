"""Codex CLI session rollouts (~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl): one run per session.

Each line is {timestamp, type, payload}. `session_meta` opens the session (id, cwd, cli_version,
git, ...); `turn_context` names the model; `response_item` payloads are the conversation:
`message` (user / assistant / developer, with input_text / output_text parts), `reasoning`
(summary text, attached to the next assistant step), `function_call` (arguments as a JSON string),
`function_call_output`, `custom_tool_call(_output)`, `local_shell_call`, `web_search_call`.
`event_msg` lines mostly repeat the response items for the UI and are not read as steps, except
`token_count` (the session's token totals) and `exec_command_end` / `patch_apply_end` (whether
a call failed). Older rollouts wrote bare response items after a {id, timestamp, instructions}
line; they are read the same way.

A rollout file holds one session; a further `session_meta` starts a new run only once the
current one has steps (a forked session repeats its parent's meta before any new step).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Iterator, Optional

import orjson

from memkit.model import Run, Step, ToolCall
from memkit.stores.formats import ReadContext, RecordError, RecordReader
from memkit.stores.formats.fields import check_nesting, join_json, may_nest_deeply, opt_str, text_of
from memkit.stores.formats.openai_chat import parse_arguments
from memkit.stores.records import Record

_LINE_TYPES = frozenset(("session_meta", "response_item", "event_msg", "turn_context", "compacted"))
_ITEM_TYPES = frozenset(("message", "reasoning", "function_call", "function_call_output", "custom_tool_call",
                         "custom_tool_call_output", "local_shell_call", "web_search_call"))
_ROLES = {"user": "user", "assistant": "assistant", "developer": "system", "system": "system"}
_EXIT = re.compile(r"(?:^|\n)(?:Exit code:|Process exited with code) (-?\d+)")
_CONTEXT_TAGS = ("<environment_context>", "<user_instructions>", "<permissions instructions>", "# AGENTS.md")


def output_text(output: Any, where: str) -> tuple[Optional[str], Optional[bool]]:
    """A tool output's text, and whether it says the call failed (None: it does not say)."""
    if isinstance(output, dict):  # {content, success} from the older function_call_output shape
        success = output.get("success")
        return text_of(output.get("content"), where), (success is False) if isinstance(success, bool) else None
    text = text_of(output, where)
    if not text:
        return text, None
    if text.startswith("{"):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
        meta = parsed.get("metadata") if isinstance(parsed, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("exit_code"), int):
            # {"output": ..., "metadata": {"exit_code": ...}}: the output is the text, the code says if it failed
            inner = parsed.get("output")
            return (inner if isinstance(inner, str) else text), meta["exit_code"] != 0
    found = _EXIT.search(text[:500])
    return text, (int(found.group(1)) != 0) if found else None


class _Rollout:
    """One run being assembled from a rollout's lines."""

    def __init__(self, meta: Optional[dict]):
        self.meta_payload = meta or {}
        self.kept: list[Record] = []
        self.steps: list[Step] = []
        self.call_names: dict[str, str] = {}
        self.pending_reasoning: list[str] = []
        self.exit_codes: dict[str, bool] = {}  # call id -> failed, from exec/patch end events
        self.model: Optional[str] = None
        self.tokens: Optional[dict] = None
        self.first_ts: Optional[str] = None
        self.last_ts: Optional[str] = None
        self.other_meta: list[str] = []

    def _assistant(self) -> Step:
        """The assistant step a call or reply joins: the last step if it is an assistant step, else a new one."""
        if self.steps and self.steps[-1].role == "assistant" and not self.pending_reasoning:
            return self.steps[-1]
        step = Step(role="assistant")
        self._take_reasoning(step)
        self.steps.append(step)
        return step

    def _take_reasoning(self, step: Step) -> None:
        if self.pending_reasoning:
            step.reasoning = "\n".join(self.pending_reasoning)
            self.pending_reasoning = []

    def add_item(self, item: Any, ctx: ReadContext) -> None:
        if not isinstance(item, dict):
            raise RecordError(f"response item must be an object, not {type(item).__name__}")
        kind = item.get("type")
        if kind == "message":
            role = item.get("role")
            if not isinstance(role, str) or role not in _ROLES:  # a list or object is not hashable
                raise RecordError(f"message role {role!r} is not one of user, assistant, developer, system")
            content = item.get("content")
            if not isinstance(content, (list, str)):
                raise RecordError(f"message content must be a list of parts, not {type(content).__name__}")
            step = Step(role=_ROLES[role], text=text_of(content, "message"))
            if step.role == "assistant":
                self._take_reasoning(step)
            else:
                self._flush_reasoning()
            self.steps.append(step)
        elif kind == "reasoning":
            summary = item.get("summary")
            parts = [p for p in (summary if isinstance(summary, list) else []) if isinstance(p, dict)]
            content = item.get("content")
            parts += [p for p in (content if isinstance(content, list) else []) if isinstance(p, dict)]
            text = "\n".join(p["text"] for p in parts if isinstance(p.get("text"), str))
            if text:
                self.pending_reasoning.append(text)
        elif kind in ("function_call", "custom_tool_call"):
            name = item.get("name")
            if not isinstance(name, str) or not name:
                raise RecordError(f"{kind} has no name")
            args, raw = parse_arguments(item.get("arguments" if kind == "function_call" else "input"))
            self._call(name, args, raw, item.get("call_id"))
        elif kind == "local_shell_call":
            self._call("local_shell", item.get("action"), None, item.get("call_id"))
        elif kind == "web_search_call":
            self._call("web_search", item.get("action"), None, item.get("id"))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            self._flush_reasoning()
            call_id = opt_str(item.get("call_id"))
            text, failed = output_text(item.get("output"), kind)
            if failed is None:
                failed = bool(text) and text.lstrip().startswith(ctx.error_prefixes)
            self.steps.append(Step(role="tool", text=text, name=self.call_names.get(call_id) if call_id else None,
                                   tool_call_id=call_id, is_error=failed))
        # Other items (ghost snapshots, compaction markers) are not conversation; the raw JSON keeps them.

    def _call(self, name: str, args: Any, raw: Optional[str], call_id: Any) -> None:
        if args is not None:
            check_nesting(args, f"{name} arguments")
        call_id = opt_str(call_id)
        self._assistant().tool_calls.append(ToolCall(name=name, arguments=args, arguments_raw=raw, call_id=call_id))
        if call_id:
            self.call_names[call_id] = name

    def add_event(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            return
        kind = payload.get("type")
        if kind == "token_count":
            info = payload.get("info")
            total = info.get("total_token_usage") if isinstance(info, dict) else None
            if isinstance(total, dict):
                self.tokens = total
            elif isinstance(payload.get("input_tokens"), int):
                self.tokens = payload
        elif kind == "exec_command_end" and isinstance(payload.get("exit_code"), int):
            call_id = opt_str(payload.get("call_id"))
            if call_id:
                self.exit_codes[call_id] = payload["exit_code"] != 0
        elif kind == "patch_apply_end" and isinstance(payload.get("success"), bool):
            call_id = opt_str(payload.get("call_id"))
            if call_id:
                self.exit_codes[call_id] = not payload["success"]

    def note(self, line: dict) -> None:
        ts = opt_str(line.get("timestamp"))
        if ts:
            self.first_ts = self.first_ts or ts
            self.last_ts = ts

    @property
    def session_id(self) -> Optional[str]:
        return opt_str(self.meta_payload.get("id"))

    def _flush_reasoning(self) -> None:
        """Reasoning that no reply followed becomes an assistant step of its own."""
        if self.pending_reasoning:
            step = Step(role="assistant")
            self._take_reasoning(step)
            self.steps.append(step)

    def run(self) -> Run:
        self._flush_reasoning()
        for step in self.steps:
            if step.role == "tool" and step.tool_call_id in self.exit_codes:
                step.is_error = self.exit_codes[step.tool_call_id]
        m = self.meta_payload
        meta = {k: v for k, v in {
            "session_id": self.session_id,
            "cwd": opt_str(m.get("cwd")),
            "originator": opt_str(m.get("originator")),
            "cli_version": opt_str(m.get("cli_version")),
            "source": opt_str(m.get("source")),
            "model_provider": opt_str(m.get("model_provider")),
            "forked_from_id": opt_str(m.get("forked_from_id")),
            "git_branch": opt_str(m["git"].get("branch")) if isinstance(m.get("git"), dict) else None,
            "git_commit": opt_str(m["git"].get("commit_hash")) if isinstance(m.get("git"), dict) else None,
            "other_session_ids": self.other_meta or None,
        }.items() if v is not None}
        tokens_in = tokens_out = None
        if self.tokens:
            usage = {k: v for k, v in self.tokens.items() if isinstance(v, int) and not isinstance(v, bool)}
            meta["usage"] = usage
            tokens_in, tokens_out = usage.get("input_tokens"), usage.get("output_tokens")
        task_text = next((s.text for s in self.steps if s.role == "user" and s.text
                          and not s.text.lstrip().startswith(_CONTEXT_TAGS)), None)
        return Run(
            steps=self.steps,
            raw=None,
            external_id=self.session_id,
            task_text=task_text,
            agent="codex",
            model=self.model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            started_at=opt_str(m.get("timestamp")) or self.first_ts,
            ended_at=self.last_ts,
            metadata=meta,
        )

    def record(self) -> Record:
        lines = [r.line for r in self.kept if r.line is not None]
        span = f"lines {min(lines)}-{max(lines)}" if lines else self.kept[0].location
        name = self.session_id or "without id"
        return Record(f"session {name} ({span})", min(lines) if lines else None, None,
                      join_json([r.data for r in self.kept]))


class CodexCliReader(RecordReader):
    name = "codex-cli"
    version = "1"
    priority = 20
    description = "Codex CLI session rollouts (~/.codex/sessions/**/rollout-*.jsonl): one run per session"

    def matches(self, record: Any) -> bool:
        if not isinstance(record, dict):
            return False
        kind = record.get("type")
        if isinstance(kind, str) and kind in _LINE_TYPES:  # a list or object 'type' is not hashable
            return "payload" in record
        if record.get("record_type") == "state":
            return True
        if kind == "message":  # an older rollout's bare response item
            content = record.get("content")
            return isinstance(content, list) and bool(content) and isinstance(content[0], dict) and \
                content[0].get("type") in ("input_text", "output_text")
        return kind == "function_call" and "call_id" in record and isinstance(record.get("arguments"), str)

    def read(self, records: Iterable[Record], ctx: ReadContext) -> Iterator[tuple[Record, Any]]:
        rollout: Optional[_Rollout] = None
        for record in records:
            line = record.value
            if not isinstance(line, dict):
                yield record, RecordError(f"expected a rollout line object, not {type(line).__name__}")
                continue
            try:
                if may_nest_deeply(record.data):
                    check_nesting(line, "line")
                kind = line.get("type")
                if "payload" in line and isinstance(kind, str):
                    payload = line["payload"]  # a line kind this reader does not know is kept, not read
                elif line.get("record_type") == "state":
                    kind, payload = "state", None
                elif isinstance(kind, str) and kind in _ITEM_TYPES:  # a list or object 'type' is not hashable
                    kind, payload = "response_item", line
                elif "id" in line and "timestamp" in line and "payload" not in line and kind is None:
                    kind, payload = "session_meta", line  # an older rollout's first line
                else:
                    raise RecordError(f"unknown rollout line type {kind!r}")
                if kind == "session_meta":
                    if not isinstance(payload, dict):
                        raise RecordError("session_meta payload must be an object")
                    if rollout is not None and rollout.steps:
                        yield rollout.record(), rollout.run()
                        rollout = None
                    if rollout is None:
                        rollout = _Rollout(payload)
                    elif not rollout.meta_payload:
                        rollout.meta_payload = payload
                    elif opt_str(payload.get("id")) and payload.get("id") != rollout.session_id:
                        rollout.other_meta.append(str(payload["id"]))
                else:
                    rollout = rollout or _Rollout(None)
                    if kind == "response_item":
                        rollout.add_item(payload, ctx)
                    elif kind == "event_msg":
                        rollout.add_event(payload)
                    elif kind == "turn_context" and isinstance(payload, dict):
                        rollout.model = rollout.model or opt_str(payload.get("model"))
            except RecordError as e:
                yield record, e
                continue
            rollout.note(line)
            rollout.kept.append(Record(record.location, record.line, data=record.data))  # the bytes, not the value
        if rollout is not None and rollout.steps:
            yield rollout.record(), rollout.run()


READER = CodexCliReader()
