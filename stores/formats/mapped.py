"""Generic JSON / JSON Lines runs, read through a YAML mapping (`memkit ingest FILE --map map.yaml`).

For in-house logs: the mapping says where each field lives, as dotted paths (`data.turns`,
`result.passed`, `turns[0].text`; a leading `$.` is allowed). Paths of run fields start at the
run, message fields at the message, call fields at the tool call. Never auto-detected.

    runs: sessions            # optional: where a record's runs are (default: each record is a run)
    messages: data.turns      # required
    role: speaker             # default role
    roles: {human: user, bot: assistant, function: tool}
    content: text             # default content (text, or a list of parts with text)
    reasoning: thought
    tool_calls: calls         # default tool_calls (a list of calls, or one call)
    tool_name: tool           # default function.name, else name
    tool_arguments: input     # default function.arguments, else arguments
    tool_call_id: id          # default id
    tool_output: output       # a call's result, when the log keeps it with the call
    tool_result_id: call_id   # on a tool message: the call it answers (default tool_call_id)
    tool_error: failed        # on a tool message or call: true, or the error text
    id: session_id
    task_id: task.id
    task_text: task.prompt
    outcome: result.passed    # true/false, a word (success, failed, ...), or a number
    outcome_values: {good: success, bad: failure}   # the log's own words for outcomes
    reward: result.score
    model: model
    agent: agent
    started_at: start
    ended_at: end
    metadata: meta            # an object kept as the run's metadata
    playbook: meta.playbook   # NAME@VERSION the run had in context
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from memkit.errors import MemkitError
from memkit.model import Run, Step, ToolCall
from memkit.stores.formats import ReadContext, RecordError, RecordReader
from memkit.stores.formats._checks import dumps, storable
from memkit.stores.formats.fields import opt_str, outcome_from, text_of
from memkit.stores.formats.openai_chat import parse_arguments
from memkit.stores.records import Record

Segment = Union[str, int]
_SEGMENT = re.compile(r"\[(\d+)\]|([^.\[\]]+)")
_PATH = re.compile(r"^(?:\$|(?:\$\.?)?(?:[^.\[\]$][^.\[\]]*|\[\d+\])(?:\.[^.\[\]]+|\[\d+\])*)$")
_ALIASES = {"human": "user", "ai": "assistant", "bot": "assistant", "model": "assistant", "function": "tool",
            "developer": "system", "observation": "tool"}
_ROLES = ("system", "user", "assistant", "tool")
_MISSING = object()


class BadMapping(MemkitError):
    "A --map file is not a valid mapping of where a JSON format keeps its fields."


def compile_path(path: str) -> tuple[Segment, ...]:
    """`a.b[0].c`, `a.b.0.c` or `$.a.b` as segments; `$` alone is the value itself."""
    text = path.strip()
    if text in ("$", ""):
        return ()
    if text.startswith("$."):
        text = text[2:]
    elif text.startswith("$"):
        text = text[1:]
    out: list[Segment] = []
    for index, key in _SEGMENT.findall(text):
        out.append(int(index) if index else key)
    return tuple(out)


def get(value: Any, path: tuple[Segment, ...], default: Any = None) -> Any:
    for seg in path:
        if isinstance(value, dict):
            if isinstance(seg, int):
                seg = str(seg)
            if seg not in value:
                return default
            value = value[seg]
        elif isinstance(value, list):
            if isinstance(seg, str):
                if not seg.isdigit():
                    return default
                seg = int(seg)
            if seg >= len(value):
                return default
            value = value[seg]
        else:
            return default
    return value


class Mapping(BaseModel):
    """Where a generic JSON format keeps the fields of a run (dotted paths)."""

    model_config = ConfigDict(extra="forbid")

    runs: Optional[str] = None
    messages: str
    role: str = "role"
    roles: dict[str, Literal["system", "user", "assistant", "tool"]] = {}
    content: str = "content"
    reasoning: Optional[str] = None
    tool_calls: str = "tool_calls"
    tool_name: Optional[str] = None
    tool_arguments: Optional[str] = None
    tool_call_id: str = "id"
    tool_output: Optional[str] = None
    tool_result_id: str = "tool_call_id"
    tool_error: Optional[str] = None
    id: Optional[str] = None
    task_id: Optional[str] = None
    task_text: Optional[str] = None
    outcome: Optional[str] = None
    outcome_values: dict[str, Literal["success", "failure", "partial", "unknown"]] = {}
    reward: Optional[str] = None
    model: Optional[str] = None
    agent: Optional[str] = None
    started_at: Optional[str] = None
    ended_at: Optional[str] = None
    metadata: Optional[str] = None
    playbook: Optional[str] = None

    @field_validator("*", mode="before")
    @classmethod
    def _paths(cls, v: Any, info) -> Any:
        if info.field_name in ("roles", "outcome_values"):
            return v
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)  # YAML reads `content: 0` as a number
        if isinstance(v, str) and not _PATH.match(v.strip()):
            raise ValueError(f"{v!r} is not a dotted path (like data.turns or turns[0].text)")
        return v


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        known = ", ".join(Mapping.model_fields)
        return f"unknown key {loc!r} (known keys: {known})"
    if kind == "missing":
        return f"{loc!r} is required (the path to a run's message list, e.g. messages: data.turns)"
    if kind == "literal_error":
        allowed = "system, user, assistant, tool" if err["loc"][0] == "roles" else "success, failure, partial, unknown"
        return f"{loc}: {err['input']!r} is not one of {allowed}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "string_type":
        return f"{loc}: expected a dotted path, not {type(err['input']).__name__}"
    return f"{loc}: {msg}"


def load_mapping(path: str | Path, format: Optional[str] = None) -> "MappedReader":
    """The reader a YAML mapping file describes; BadMapping (one line) when the file is not valid."""
    where = f"--map {path}"
    if format not in (None, "mapped"):
        raise BadMapping(f"{where}: cannot be combined with --format {format}")
    try:
        text = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadMapping(f"{where}: no such file") from None
    except OSError as e:
        raise BadMapping(f"{where}: cannot read ({e.strerror or e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        at = f"line {mark.line + 1}: " if mark is not None else ""
        raise BadMapping(f"{where}: not valid YAML ({at}{problem})") from None
    if not isinstance(data, dict):
        raise BadMapping(f"{where}: expected a YAML mapping of field: path, not {type(data).__name__}")
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as e:
        raise BadMapping(f"{where}: {_first_error(e)}") from None
    return MappedReader(mapping, hashlib.sha256(text).hexdigest()[:8])


class MappedReader(RecordReader):
    name = "mapped"
    priority = 99
    detectable = False
    description = "Generic JSON/JSONL through a YAML mapping of where the fields are (--map FILE; never detected)"

    def __init__(self, mapping: Optional[Mapping] = None, digest: str = ""):
        self.mapping = mapping
        self.version = f"1+{digest}" if digest else "1"
        self.paths: dict[str, tuple[Segment, ...]] = {} if mapping is None else {
            name: compile_path(v) for name, v in mapping.model_dump().items() if isinstance(v, str)}

    def matches(self, record: Any) -> bool:
        return False

    def read(self, records: Iterable[Record], ctx: ReadContext) -> Iterator[tuple[Record, Any]]:
        if self.mapping is None:
            raise BadMapping("--format mapped needs --map FILE (a YAML mapping of where the fields are)")
        runs_path = self.paths.get("runs")
        for record in records:
            if runs_path is None:
                yield record, self._run_or_error(record.value, ctx)
                continue
            runs = get(record.value, runs_path)
            if not isinstance(runs, list):
                found = "nothing" if runs is None else type(runs).__name__
                yield record, RecordError(f"runs ({self.mapping.runs}) must be a list, found {found}")
                continue
            for k, value in enumerate(runs):
                location = f"{record.location} run {k}"
                try:
                    sub = Record(location, record.line, value, dumps(value, "run"))
                except RecordError as e:
                    yield Record(location, record.line), e
                    continue
                yield sub, self._run_or_error(value, ctx)

    def _run_or_error(self, value: Any, ctx: ReadContext) -> Any:
        try:
            return self.to_run(value, ctx)
        except RecordError as e:
            return e

    # ------------------------------------------------------------ one run

    def _calls(self, raw: Any, where: str) -> list[tuple[ToolCall, Any, Any]]:
        """(call, its output or _MISSING, its error) for each tool call of a message."""
        if raw is None:
            return []
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list):
            raise RecordError(f"{where}: tool calls ({self.mapping.tool_calls}) must be a list, not {type(raw).__name__}")
        p = self.paths
        out = []
        for j, c in enumerate(raw):
            if not isinstance(c, dict):
                raise RecordError(f"{where}: tool call {j} must be an object, not {type(c).__name__}")
            name = get(c, p["tool_name"]) if "tool_name" in p else get(c, ("function", "name"), get(c, ("name",)))
            if not isinstance(name, str) or not name:
                raise RecordError(f"{where}: tool call {j} has no name"
                                  + (f" at {self.mapping.tool_name}" if self.mapping.tool_name else ""))
            if "tool_arguments" in p:
                args_in = get(c, p["tool_arguments"])
            else:
                args_in = get(c, ("function", "arguments"), get(c, ("arguments",)))
            args, raw_args = parse_arguments(args_in)
            storable(args, f"{where}: tool call {j} arguments")
            output = get(c, p["tool_output"], _MISSING) if "tool_output" in p else _MISSING
            error = get(c, p["tool_error"]) if "tool_error" in p else None
            out.append((ToolCall(name=name, arguments=args, arguments_raw=raw_args,
                                 call_id=opt_str(get(c, p["tool_call_id"]))), output, error))
        return out

    def _result(self, text: Optional[str], error: Any, ctx: ReadContext, **kw) -> Step:
        if isinstance(error, str) and error:
            text = f"{text}\n{error}" if text else error
        is_error = bool(error) or (bool(text) and text.lstrip().startswith(ctx.error_prefixes))
        return Step(role="tool", text=text, is_error=is_error, **kw)

    def steps(self, messages: Any, ctx: ReadContext) -> list[Step]:
        m_path = self.mapping.messages
        if not isinstance(messages, list):
            found = "nothing" if messages is None else type(messages).__name__
            raise RecordError(f"messages ({m_path}) must be a list, found {found}")
        if not messages:
            raise RecordError(f"messages ({m_path}) is empty")
        p = self.paths
        roles = self.mapping.roles
        steps: list[Step] = []
        names: dict[str, str] = {}
        for i, m in enumerate(messages):
            where = f"message {i}"
            if not isinstance(m, dict):
                raise RecordError(f"{where}: expected an object, not {type(m).__name__}")
            raw_role = get(m, p["role"])
            if not isinstance(raw_role, str):
                raise RecordError(f"{where}: no role at {self.mapping.role}")
            role = roles.get(raw_role) or _ALIASES.get(raw_role.lower(), raw_role.lower())
            if role not in _ROLES:
                raise RecordError(f"{where}: role {raw_role!r} is not one of {', '.join(_ROLES)} (map it under roles:)")
            content = get(m, p["content"])
            if isinstance(content, dict):
                content = dumps(content, f"{where}: content").decode()
            text = text_of(content, where) if not isinstance(content, bool) else str(content).lower()
            if role == "tool":
                call_id = opt_str(get(m, p["tool_result_id"]))
                error = get(m, p["tool_error"]) if "tool_error" in p else None
                name = opt_str(get(m, ("name",))) or names.get(call_id or "")
                steps.append(self._result(text, error, ctx, name=name, tool_call_id=call_id))
                continue
            step = Step(role=role, text=text)
            if "reasoning" in p:
                r = get(m, p["reasoning"])
                step.reasoning = r if isinstance(r, str) else None
            calls = self._calls(get(m, p["tool_calls"]), where)
            step.tool_calls = [c for c, _, _ in calls]
            names.update((c.call_id, c.name) for c in step.tool_calls if c.call_id)
            steps.append(step)
            for call, output, error in calls:  # results the log keeps with their calls
                if output is not _MISSING or error:
                    out_text = None if output is _MISSING or output is None else (
                        output if isinstance(output, str) else dumps(output, f"{where}: tool output").decode())
                    steps.append(self._result(out_text, error, ctx, name=call.name, tool_call_id=call.call_id))
        return steps

    def to_run(self, record: Any, ctx: ReadContext) -> Run:
        if self.mapping is None:
            raise BadMapping("--format mapped needs --map FILE (a YAML mapping of where the fields are)")
        p = self.paths
        if not isinstance(record, (dict, list)):
            raise RecordError(f"expected an object, not {type(record).__name__}")
        steps = self.steps(get(record, p["messages"]), ctx)

        def field(name: str) -> Any:
            return get(record, p[name]) if name in p else None

        outcome, reward = field("outcome"), field("reward")
        if isinstance(outcome, str) and outcome in self.mapping.outcome_values:
            outcome = self.mapping.outcome_values[outcome]
        if isinstance(outcome, bool):
            outcome, reward = outcome_from(ctx, reward=reward, success=outcome)
        elif isinstance(outcome, (int, float)):
            outcome, reward = outcome_from(ctx, reward=outcome if reward is None else reward)
        else:
            outcome, reward = outcome_from(ctx, reward=reward, outcome=outcome)
        metadata = field("metadata")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise RecordError(f"metadata ({self.mapping.metadata}) must be an object, not {type(metadata).__name__}")
        storable(metadata, "metadata")
        return Run(
            steps=steps,
            raw=record,
            external_id=opt_str(field("id")),
            task_id=opt_str(field("task_id")),
            task_text=opt_str(field("task_text")) or next((s.text for s in steps if s.role == "user" and s.text), None),
            agent=opt_str(field("agent")),
            model=opt_str(field("model")),
            outcome=outcome,
            reward=reward,
            started_at=opt_str(field("started_at")),
            ended_at=opt_str(field("ended_at")),
            playbook_ref=opt_str(field("playbook")),
            metadata=metadata,
        )


READER = MappedReader()
