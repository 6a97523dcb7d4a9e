"""Claude Code session logs (~/.claude/projects/PROJECT/SESSION.jsonl): one event per line, one run per session.

Each `user` / `assistant` event carries one Anthropic message (`message`), with `sessionId`,
`uuid`, `parentUuid`, `isSidechain` and `timestamp`; tool results come back as user messages
holding `tool_result` blocks. Claude Code writes one line per content block of a streamed
assistant reply, so consecutive lines of the same message id become one step again.
`summary` lines name the session; other event kinds (file-history snapshots, progress, ...)
produce no step but stay in the run's raw JSON.

Sidechains (the conversations of subagents started with the Task tool) are kept as runs of their
own, linked to their session by `metadata.parent_session`: a subagent's events carry
`isSidechain: true` and its `agentId`, either in the session file (older versions) or in
SESSION/subagents/agent-ID.jsonl. Without an agentId, a sidechain is the chain of events hanging
off one root by `parentUuid`. Merging them into the parent would interleave two conversations.

The file is read as it streams; a session's steps are held until the file ends (events of one
session can be anywhere in it), so memory grows with the largest session, not the file.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional

from memkit.model import Run, Step
from memkit.stores.formats import ReadContext, RecordError, RecordReader
from memkit.stores.formats.anthropic_messages import message_steps
from memkit.stores.formats.fields import check_nesting, join_json, may_nest_deeply, opt_str
from memkit.stores.records import Record

_MESSAGE_EVENTS = frozenset(("user", "assistant", "system"))
_COMMAND_PREFIXES = ("<command-", "<local-command-")
_SESSIONLESS = frozenset(("summary", "file-history-snapshot"))


def merge_into(step: Step, more: Step) -> None:
    """Fold a continuation of the same assistant message into its step."""
    if more.text:
        step.text = f"{step.text}\n{more.text}" if step.text else more.text
    if more.reasoning:
        step.reasoning = f"{step.reasoning}\n{more.reasoning}" if step.reasoning else more.reasoning
    step.tool_calls.extend(more.tool_calls)


def _usage_numbers(usage: Any) -> dict[str, int]:
    if not isinstance(usage, dict):
        return {}
    return {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}


class _Session:
    """One run being assembled from the events of a session (or of one of its sidechains)."""

    def __init__(self, session_id: str, sub: Optional[str], agent_id: Optional[str]):
        self.session_id = session_id
        self.sub = sub
        self.agent_id = agent_id
        self.kept: list[tuple[int, Record]] = []  # (order in the file, record)
        self.steps: list[Step] = []
        self.call_names: dict[str, str] = {}
        self.last_message_id: Optional[str] = None
        self.usage: dict[str, dict[str, int]] = {}
        self.task_text: Optional[str] = None
        self.model: Optional[str] = None
        self.first_ts: Optional[str] = None
        self.last_ts: Optional[str] = None
        self.meta: dict[str, Any] = {}
        self.summaries: list[str] = []

    def keep(self, order: int, record: Record) -> None:
        """Hold the event's bytes for the run's raw JSON; its parsed value is not needed again."""
        self.kept.append((order, Record(record.location, record.line, data=record.data)))

    def add(self, event: dict, ctx: ReadContext) -> None:
        kind = event["type"]
        if kind == "system":
            content = event.get("content")
            if isinstance(content, str) and content:
                self.steps.append(Step(role="system", text=content))
                self.last_message_id = None
            return
        message = event.get("message")
        if not isinstance(message, dict):
            raise RecordError(f"message must be an object, not {type(message).__name__}")
        steps = message_steps(message, "message", ctx, self.call_names)
        message_id = opt_str(message.get("id"))
        if kind == "assistant":
            model = opt_str(message.get("model"))
            if model and not model.startswith("<") and self.model is None:
                self.model = model
            if message_id:
                usage = _usage_numbers(message.get("usage"))
                if usage:
                    self.usage[message_id] = usage  # the last line of a streamed message has the final count
        if (message_id and message_id == self.last_message_id and steps and self.steps
                and self.steps[-1].role == "assistant" and steps[0].role == "assistant"):
            merge_into(self.steps[-1], steps.pop(0))
        self.steps.extend(steps)
        self.last_message_id = message_id if kind == "assistant" else None
        if self.task_text is None and kind == "user" and event.get("isMeta") is not True:
            text = next((s.text for s in steps if s.role == "user" and s.text), None)
            if text and not text.lstrip().startswith(_COMMAND_PREFIXES):
                self.task_text = text

    def note(self, event: dict) -> None:
        ts = opt_str(event.get("timestamp"))
        if ts:
            self.first_ts = self.first_ts or ts
            self.last_ts = ts
        for src, dst in (("cwd", "cwd"), ("version", "claude_code_version"), ("gitBranch", "git_branch"),
                         ("slug", "slug")):
            value = event.get(src)
            if isinstance(value, str) and value and dst not in self.meta:
                self.meta[dst] = value

    @property
    def external_id(self) -> str:
        return f"{self.session_id}/{self.sub}" if self.sub else self.session_id

    def run(self) -> Run:
        meta = dict(self.meta)
        meta["session_id"] = self.session_id
        if self.sub:
            meta["parent_session"] = self.session_id
            meta["sidechain"] = True
            if self.agent_id:
                meta["agent_id"] = self.agent_id
        if self.summaries:
            meta["summary"] = self.summaries[-1]
        tokens_in = tokens_out = None
        if self.usage:
            totals: dict[str, int] = {}
            for usage in self.usage.values():
                for k, v in usage.items():
                    totals[k] = totals.get(k, 0) + v
            meta["usage"] = totals
            tokens_in = sum(totals.get(k, 0) for k in (
                "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
            tokens_out = totals.get("output_tokens")
        return Run(
            steps=self.steps,
            raw=None,
            external_id=self.external_id,
            task_text=self.task_text or next((s.text for s in self.steps if s.role == "user" and s.text), None),
            agent="claude-code",
            model=self.model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            started_at=self.first_ts,
            ended_at=self.last_ts,
            metadata=meta,
        )

    def record(self) -> Record:
        """Where the run came from, with the redacted JSON of its events in file order."""
        self.kept.sort(key=lambda kept: kept[0])
        records = [r for _, r in self.kept]
        lines = [r.line for r in records if r.line is not None]
        span = f"lines {min(lines)}-{max(lines)}" if lines else records[0].location
        return Record(f"session {self.external_id} ({span})", min(lines) if lines else None, None,
                      join_json([r.data for r in records]))


class ClaudeCodeReader(RecordReader):
    name = "claude-code"
    version = "1"
    priority = 20
    description = "Claude Code session JSONL (~/.claude/projects/*/*.jsonl): one run per session, sidechains linked"

    def matches(self, record: Any) -> bool:
        if not isinstance(record, dict):
            return False
        kind = record.get("type")
        if not isinstance(kind, str):  # a list or object 'type' is not hashable
            return False
        if kind in _MESSAGE_EVENTS:
            return isinstance(record.get("sessionId"), str) and "uuid" in record and "parentUuid" in record
        if kind == "summary":
            return "leafUuid" in record and "summary" in record
        return kind == "file-history-snapshot" and "snapshot" in record and "messageId" in record

    def read(self, records: Iterable[Record], ctx: ReadContext) -> Iterator[tuple[Record, Any]]:
        sessions: dict[tuple[str, Optional[str]], _Session] = {}
        owner: dict[str, tuple[str, Optional[str]]] = {}  # event uuid -> the run it went to
        pending: list[tuple[int, Record, dict]] = []  # events before any session: summaries, snapshots
        current: Optional[_Session] = None
        current_main: Optional[_Session] = None
        for order, record in enumerate(records):
            event = record.value
            if not isinstance(event, dict):
                yield record, RecordError(f"expected an event object, not {type(event).__name__}")
                continue
            try:
                if may_nest_deeply(record.data):
                    check_nesting(event, "event")
                kind = event.get("type")
                if not isinstance(kind, str):
                    raise RecordError("event has no string 'type'")
                session_id = event.get("sessionId")
                if kind not in _MESSAGE_EVENTS:
                    # A summary names the conversation its leaf message is in; other events go to their
                    # session, else to the main conversation being read.
                    key = owner.get(event.get("leafUuid")) if isinstance(event.get("leafUuid"), str) else None
                    if key is None and isinstance(session_id, str):
                        key = (session_id, None)
                    target = sessions.get(key) if key else None
                    target = target or current_main or current
                    if target is None:
                        pending.append((order, record, event))
                    else:
                        self._attach(target, order, record, event)
                    continue
                if not isinstance(session_id, str) or not session_id:
                    raise RecordError("event has no string 'sessionId'")
                key = self._key(event, session_id, owner)
                session = sessions.get(key)
                if session is None:
                    session = sessions[key] = _Session(session_id, key[1], opt_str(event.get("agentId")))
                    if pending and key[1] is None:
                        for o, r, e in pending:
                            self._attach(session, o, r, e)
                        pending.clear()
                session.add(event, ctx)
            except RecordError as e:
                yield record, e
                continue
            session.note(event)
            session.keep(order, record)
            uuid = event.get("uuid")
            if isinstance(uuid, str):
                owner[uuid] = key
            current = session
            if key[1] is None:
                current_main = session
        if pending and sessions:
            first = next(iter(sessions.values()))
            for o, r, e in pending:
                self._attach(first, o, r, e)
        elif pending:
            # No session at all: a summary-only file is a normal leftover; anything else is not this format.
            for _, r, e in pending:
                if e.get("type") not in _SESSIONLESS:
                    yield r, RecordError(f"event type {e.get('type')!r} is not part of a Claude Code session")
        for session in sessions.values():
            if session.steps:
                yield session.record(), session.run()

    @staticmethod
    def _key(event: dict, session_id: str, owner: dict) -> tuple[str, Optional[str]]:
        if event.get("isSidechain") is not True:
            return session_id, None
        agent_id = event.get("agentId")
        if isinstance(agent_id, str) and agent_id:
            return session_id, f"agent-{agent_id}"
        parent = owner.get(event.get("parentUuid")) if isinstance(event.get("parentUuid"), str) else None
        if parent is not None and parent[1] is not None:
            return parent
        uuid = event.get("uuid")
        return session_id, f"sidechain-{uuid if isinstance(uuid, str) else len(owner)}"

    @staticmethod
    def _attach(session: _Session, order: int, record: Record, event: dict) -> None:
        """An event that is not a message: kept in the run's raw JSON; a summary also names the run."""
        if event.get("type") == "summary" and isinstance(event.get("summary"), str):
            session.summaries.append(event["summary"])
        session.keep(order, record)


READER = ClaudeCodeReader()
