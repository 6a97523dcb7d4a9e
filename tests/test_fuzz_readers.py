"""Property-based fuzzing of every reader: hostile JSON is a reject, never an exception, and never
costs a valid record beside it (issue 7, "Trust nothing, lose nothing")."""

from __future__ import annotations

import copy
import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import FORMAT_SAMPLES, FORMATS, no_traceback, run_obj, squash
from memkit.canonical import content_hash
from memkit.cli.main import app
from memkit.stores.formats import ReadContext, RecordError, registry
from memkit.stores.formats.inspect_eval import read_entry
from memkit.stores.formats.mapped import load_mapping
from memkit.stores.ingest import run_id_of
from memkit.stores.records import Record, Redactions, read_records

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

# A file holding runs of each reader's format, read the way ingest reads it.
SAMPLES = FORMAT_SAMPLES
# Readers whose runs span records (one event per line, spans grouped by trace): fuzzed records may
# join the run being read, so a run is recognised by its id there, and by its whole content elsewhere.
SESSION_READERS = {"claude-code", "codex-cli"}
JOINING_READERS = SESSION_READERS | {"otel-genai"}

CTX = ReadContext()


def test_every_reader_has_a_sample():
    assert set(registry()) == set(SAMPLES)


def _reader(name: str):
    if name == "mapped":
        return load_mapping(FORMATS / "mapped" / "support-map.yaml", "mapped")
    return registry()[name]


def _good_records(name: str, tmp: Path) -> list[Record]:
    if name == "openai-chat":
        path = tmp / "good.jsonl"
        path.write_text("".join(json.dumps(run_obj(i, success=i % 2 == 0)) + "\n" for i in range(2)), encoding="utf-8")
    else:
        path = SAMPLES[name]
    records = list(read_records(path, Redactions()))
    if name == "tau-bench":
        records = records[:2]
    assert records and not any(r.error for r in records)
    return records


# ---------------------------------------------------------------- strategies

_text = st.text(st.characters(codec="utf-8"), max_size=40)
_scalars = (st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 64 - 1)
            | st.floats(allow_nan=False, allow_infinity=False) | _text)
json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(_text, inner, max_size=5), max_leaves=30)


@st.composite
def deep(draw) -> Any:
    """A value nested 240 to 300 levels deep: orjson reads 1024 levels but writes at most 255."""
    value: Any = draw(_scalars)
    for _ in range(draw(st.integers(240, 300))):
        value = [value] if draw(st.booleans()) else {"content": value}
    return value


huge = st.integers(100_000, 1_000_000).map(lambda n: "x" * n)
# JSON inside strings (tool-call arguments, OTel attributes) is parsed by the readers too.
hostile = (json_values | deep() | deep().map(json.dumps) | json_values.map(json.dumps) | huge
           | st.just({}) | st.just([]) | st.just("{not json"))


def _paths(value: Any, prefix=()) -> list[tuple]:
    """Every path to a container member in the value, breadth-limited so big samples stay cheap."""
    out = []
    stack = [(value, prefix)]
    while stack and len(out) < 2000:
        v, p = stack.pop()
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
        for k, child in items:
            out.append(p + (k,))
            if len(p) < 12:
                stack.append((child, p + (k,)))
    return out


# Members readers keep or parse as they are: where a hostile value does the most harm.
_SOFT_SPOTS = frozenset(("arguments", "input", "metadata", "info", "content", "payload", "attributes", "value",
                         "stringValue", "tool_calls", "messages", "output", "text", "type", "role"))


def _at(value: Any, path: tuple) -> Any:
    for k in path:
        value = value[k]
    return value


@st.composite
def corrupted(draw, good: Any) -> Any:
    """The good value with a few members replaced by wrong types, huge strings or deep nesting, removed,
    or given extra keys."""
    value = copy.deepcopy(good)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(value)
        if not paths:
            return draw(hostile)
        soft = [p for p in paths if p[-1] in _SOFT_SPOTS]
        path = draw(st.sampled_from(soft if soft and draw(st.booleans()) else paths))
        parent, key = _at(value, path[:-1]), path[-1]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "add" and isinstance(parent, dict):  # a key readers keep as-is (metadata, info)
            parent[draw(st.sampled_from(sorted(_SOFT_SPOTS)))] = draw(hostile)
        else:
            parent[key] = draw(hostile)
    return value


def _record(n: int, value: Any) -> Record:
    # json, not orjson: a record nested deeper than orjson can write is still one a file can hold.
    return Record(f"line {n}", n, value, json.dumps(value).encode())


def _fuzz_records(data, goods: list[Record]) -> list[Record]:
    values = data.draw(st.lists(hostile | st.sampled_from(goods).flatmap(lambda r: corrupted(r.value)),
                                min_size=1, max_size=4))
    return [_record(100 + i, v) for i, v in enumerate(values)]


def _ingested(pairs) -> list:
    """The pairs a reader yields, each taken as ingest takes it: a run gets its id (or becomes a
    reject there) and its rows must be writable."""
    out = []
    for record, run in pairs:
        assert isinstance(record, Record)
        if not isinstance(run, RecordError):
            try:
                run_id_of(run)
            except RecordError as e:
                run = e
            else:
                orjson.dumps(run.metadata, default=str)
                for step in run.steps:
                    for call in step.tool_calls:
                        orjson.dumps(call.arguments)
        if isinstance(run, RecordError):
            assert str(run)
        out.append((record, run))
    return out


def _key(name: str, run) -> Any:
    return run.external_id if name in JOINING_READERS else content_hash(run.identity())


def _runs(name: str, pairs) -> list:
    return [_key(name, run) for _, run in pairs if not isinstance(run, RecordError)]


# ---------------------------------------------------------------- record readers

RECORD_READERS = [n for n, r in registry().items() if not r.binary]


@pytest.mark.parametrize("name", RECORD_READERS)
@FUZZ
@given(data=st.data())
def test_hostile_records_are_rejects_and_keep_good_siblings(name, data, tmp_path):
    reader = _reader(name)
    goods = _good_records(name, tmp_path)
    expected = _runs(name, _ingested(reader.read(goods, CTX)))
    assert expected

    fuzzed = _fuzz_records(data, goods)
    for r in fuzzed:  # detection asks every reader about any record
        assert reader.matches(r.value) in (True, False)
    _ingested(reader.read(fuzzed, CTX))  # (a) alone: rejects or runs, never an exception

    if name in SESSION_READERS:  # a session is a whole file: garbage after it must not cost it
        mixed = goods + fuzzed
    else:
        mixed = list(fuzzed)
        for g in goods:
            mixed.insert(data.draw(st.integers(0, len(mixed))), g)
    pairs = _ingested(reader.read(mixed, CTX))
    got = _runs(name, pairs)
    if name == "otel-genai":
        # A corrupted copy of a span joins the trace it claims (same trace id): an inconsistent trace may
        # be rejected whole. Traces no fuzzed span claims must survive.
        claimed = "".join(json.dumps(r.value, default=str) for r in fuzzed if r.value is not None)
        expected = [run for run in expected if str(run) not in claimed]
    for run in expected:  # (b) every good run is still there
        assert run in got, [str(e)[:200] for _, e in pairs if isinstance(e, RecordError)]


def _nested(levels: int) -> Any:
    value: Any = {"k": "v"}
    for i in range(levels):
        value = [value] if i % 2 else {"a": value}
    return value


@pytest.mark.parametrize("name", RECORD_READERS)
def test_deep_values_at_every_soft_spot_are_rejects(name, tmp_path):
    """Not left to chance: 300 levels (and the same as a JSON string) at every member readers keep
    or parse, and as an extra 'metadata'/'arguments' key on every object."""
    reader = _reader(name)
    goods = _good_records(name, tmp_path)
    expected = _runs(name, _ingested(reader.read(goods, CTX)))
    deep_value = _nested(300)
    for good in goods[:3]:
        paths = [p for p in _paths(good.value) if p[-1] in _SOFT_SPOTS][:150]
        for path in paths:
            for hostile_value in (deep_value, json.dumps(deep_value)):
                value = copy.deepcopy(good.value)
                parent = _at(value, path[:-1])
                parent[path[-1]] = hostile_value
                if isinstance(parent, dict):
                    parent["metadata" if path[-1] != "metadata" else "arguments"] = deep_value
                bad = _record(99, value)
                mixed = goods + [bad] if name in SESSION_READERS else [bad] + goods
                got = _runs(name, _ingested(reader.read(mixed, CTX)))
                for run in expected:
                    assert run in got, path


def test_ingest_of_a_file_nested_deeper_than_orjson_writes_is_a_reject(runner, tmp_path):
    import memkit

    memkit.init(tmp_path).close()
    run = run_obj(1, success=True, tool="lookup", tool_args=_nested(300))
    (tmp_path / "args.jsonl").write_text(json.dumps(run) + "\n" + json.dumps(run_obj(2, success=True)) + "\n")
    (tmp_path / "meta.json").write_text(json.dumps(run_obj(3, success=True, metadata={"x": _nested(300)})))
    result = runner.invoke(app, ["ingest", "args.jsonl", "meta.json", "--json"])
    no_traceback(result)
    out = json.loads(result.stdout)
    assert (result.exit_code, out["added"], out["rejected"]) == (1, 1, 2)
    reasons = sorted(r.split(": ", 1)[1] for r in out["rejects"])
    assert all("nested" in r for r in reasons), reasons


# ---------------------------------------------------------------- .eval archives


def _eval_entries() -> dict[str, bytes]:
    with zipfile.ZipFile(SAMPLES["inspect-eval"]) as z:
        return {i.filename: read_entry(z, i) for i in z.infolist()}


def _read_eval(entries: dict[str, bytes], tmp_path: Path) -> list:
    path = tmp_path / "fuzz.eval"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    path.write_bytes(buf.getvalue())
    return _ingested(registry()["inspect-eval"].read_path(path, CTX, Redactions()))


@FUZZ
@given(data=st.data())
def test_hostile_eval_samples_are_rejects_and_keep_good_samples(data, tmp_path):
    entries = _eval_entries()
    samples = sorted(n for n in entries if n.startswith("samples/"))
    expected = {r.location: content_hash(run.identity()) for r, run in _read_eval(entries, tmp_path)
                if not isinstance(run, RecordError)}
    assert set(expected) == set(samples)

    bad = data.draw(st.lists(st.sampled_from(samples), min_size=1, max_size=2, unique=True))
    for name in bad:
        value = data.draw(hostile | corrupted(json.loads(entries[name])))
        entries[name] = json.dumps(value).encode() if data.draw(st.booleans()) else data.draw(st.binary(max_size=200))
    for i, value in enumerate(data.draw(st.lists(hostile, max_size=2))):
        entries[f"samples/fuzz_{i}.json"] = json.dumps(value).encode()
    if data.draw(st.booleans()):  # a broken header costs the archive its task and model, not its samples
        header = next(n for n in ("header.json", "_journal/start.json") if n in entries)
        entries[header] = json.dumps(data.draw(hostile | corrupted(json.loads(entries[header])))).encode()
        runs = [r.location for r, run in _read_eval(entries, tmp_path) if not isinstance(run, RecordError)]
        assert set(samples) - set(bad) <= set(runs)
        return
    runs = _runs("inspect-eval", _read_eval(entries, tmp_path))
    for name in set(samples) - set(bad):
        assert expected[name] in runs


# ---------------------------------------------------------------- end to end

_garbage_line = (
    st.binary(min_size=1, max_size=80).filter(lambda b: b.strip() and b"\n" not in b and b"\r" not in b)
    | json_values.map(lambda v: json.dumps(v).encode())
    | deep().map(lambda v: json.dumps(v).encode())
    | st.builds(lambda i, v: json.dumps({"messages": [{"role": "user", "content": v}], "success": i}).encode(),
                _scalars, json_values)
)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(garbage=st.lists(st.lists(_garbage_line, max_size=3), min_size=4, max_size=4))
def test_ingest_of_a_file_with_garbage_lines_keeps_every_good_run(garbage, runner, tmp_path):
    import memkit

    root = Path(tempfile.mkdtemp(dir=tmp_path))
    memkit.init(root).close()
    goods = [json.dumps(run_obj(i, success=True)).encode() for i in range(3)]
    lines: list[bytes] = []
    good_lines = []
    for i, junk in enumerate(garbage):
        lines += junk
        if i < len(goods):
            lines.append(goods[i])
            good_lines.append(f"line {len(lines)}")
    path = root / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = runner.invoke(app, ["ingest", "--bank", str(root), str(path), "--json"])
    if result.exit_code:
        no_traceback(result)
    assert "Error: unexpected" not in result.output and "Traceback" not in result.output, result.output
    out = json.loads(result.stdout)
    assert out["records"] == len(lines)
    assert out["added"] + out["rejected"] + out["duplicates"] == len(lines)
    assert out["added"] >= 3  # a garbage line may happen to be a run of its own
    assert result.exit_code == (1 if out["rejected"] else 0)
    if out["rejected"]:
        assert f"{out['rejected']} record(s) rejected" in squash(result.stderr)
    with memkit.open(root) as b:
        stored = {r[0] for r in b.con.execute("SELECT record_location FROM trajectories").fetchall()}
        assert set(good_lines) <= stored
        assert b.con.execute("SELECT count(*) FROM rejects").fetchall() == [(out["rejected"],)]
