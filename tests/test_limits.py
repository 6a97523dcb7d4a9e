"""Point 5 of "Trust nothing, lose nothing": resource limits (memkit.yaml `ingest:` max_record_bytes,
max_messages, max_run_bytes; see memkit/stores/limits.py).

A record over max_record_bytes is a reject with its file and line, its neighbours are kept; a run over
max_messages or max_run_bytes is kept, cut, with a visible marker, and every cut is a row of the
`truncations` table. Deep nesting is covered elsewhere: a record nested deeper than JSON parsing allows
(1024) is rejected in tests/test_secrets_purge.py (test_nested_too_deeply...) and
tests/test_formats_eval.py; one deeper than the store writes (255) in
tests/test_fuzz_readers.py::test_ingest_of_a_file_nested_deeper_than_orjson_writes_is_a_reject.
"""

from __future__ import annotations

import json
import random
import shutil
import string
import tracemalloc
from pathlib import Path

import pytest
import yaml

import memkit
from memkit.cli.main import app
from memkit.config import DEFAULT_CONFIG_TEXT, IngestConfig
from memkit.stores import records
from memkit.stores.formats import registry
from memkit.stores.limits import Limits, _cap, shorten
from memkit.stores.records import Redactions, read_records
from helpers import FORMAT_SAMPLES, FORMATS, SLICE, error_lines, messages, no_traceback, run_obj, squash, write_json, write_jsonl

OPENAI_KEY = "sk-proj-" + string.ascii_letters[:30]  # as in test_secrets: the redactor must catch it
REJECTED = "Error: {n} record(s) rejected; the other records were ingested (see the rejects table)"


def configure(root: Path, **ingest) -> None:
    """memkit.yaml with these ingest settings (the other keys keep their defaults)."""
    (root / "memkit.yaml").write_text(yaml.safe_dump({"ingest": ingest}), encoding="utf-8")


@pytest.fixture
def cli_bank(runner, tmp_path):
    assert runner.invoke(app, ["init"]).exit_code == 0
    return tmp_path


def ingest_json(runner, *args) -> tuple[int, dict]:
    result = runner.invoke(app, ["ingest", *args, "--json"])
    if result.exit_code:
        no_traceback(result)
    return result.exit_code, json.loads(result.stdout)


def long_run(i: int, n_messages: int) -> dict:
    msgs = [{"role": "user" if k % 2 == 0 else "assistant", "content": f"run {i} message {k}"} for k in range(n_messages)]
    return {"messages": msgs, "success": True}


def big_tool_run(i: int, size: int) -> dict:
    """A run whose one tool result is `size` bytes: 'A's then 'Z's, so both its ends are recognisable."""
    return run_obj(i, True, tool="read_file", tool_result="A" * (size // 2) + "Z" * (size - size // 2))


# ---------------------------------------------------------------- max_record_bytes


def test_an_oversized_line_is_rejected_with_file_and_line_and_its_neighbours_are_kept(runner, cli_bank, bank_sql):
    configure(cli_bank, max_record_bytes="5KB")
    big = run_obj(2, True, user_text=f"my key is {OPENAI_KEY} " + "x" * 20_000)
    write_jsonl(cli_bank / "r.jsonl", [run_obj(1, True), big, run_obj(3, False)])
    result = runner.invoke(app, ["ingest", "r.jsonl"])
    assert result.exit_code == 1
    no_traceback(result)
    size = len(json.dumps(big))
    reason = f"record is {size / 1000:.1f} KB, over ingest.max_record_bytes (5.0 KB)"
    assert f"rejected: r.jsonl line 2: {reason}" in result.stderr
    assert error_lines(result) == [REJECTED.format(n=1)]
    assert sorted(bank_sql("SELECT record_location FROM trajectories")) == [("line 1",), ("line 3",)]
    ((line, location, stored_reason, raw),) = bank_sql("SELECT line, location, reason, raw FROM rejects")
    assert (line, location, stored_reason) == (2, "line 2", reason)
    raw = bytes(raw)
    assert raw and len(raw) <= records.REJECT_RAW_LIMIT and json.dumps(big).encode().startswith(raw[:40])
    assert OPENAI_KEY.encode() not in raw and b"[REDACTED" in raw  # the kept start passed the redactor


def test_an_oversized_line_is_read_in_bounded_memory(tmp_path):
    path = tmp_path / "huge.jsonl"
    good = json.dumps(run_obj(1, True)).encode()
    with open(path, "wb") as f:
        f.write(good + b"\n" + b'{"messages": "' + b"x" * 30_000_000 + b'"}\n' + good + b"\n")
    tracemalloc.start()
    try:
        got = [(r.line, r.error) for r in read_records(path, Redactions(), max_bytes=100_000)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == [(1, None), (2, "record is 30.0 MB, over ingest.max_record_bytes (100.0 KB)"), (3, None)]
    assert peak < 5_000_000, peak  # the 30 MB line was never held whole


@pytest.mark.parametrize("tricky", ['plain', 'quote \\" bracket ] brace } backslash \\\\', 'ends with a backslash \\\\'])
def test_an_oversized_element_of_a_json_array_is_skipped_unread_and_rejected_by_index(tmp_path, monkeypatch, tricky):
    """Elements bigger than the read window are skipped a window at a time (escapes and brackets inside
    strings crossing window edges included); the elements after them are read as usual."""
    monkeypatch.setattr(records, "WINDOW", 1000)
    filler = (tricky + " ") * 3000
    path = tmp_path / "runs.json"
    path.write_text("[" + json.dumps(run_obj(1, True)) + ", " + json.dumps({"messages": [filler, [filler, {"k": filler}]]})
                    + ",\n" + json.dumps(run_obj(2, True)) + ", 123456789, " + json.dumps(run_obj(3, True)) + "]",
                    encoding="utf-8")
    got = [(r.location, r.error and r.error.split(",")[0], r.value) for r in read_records(path, Redactions(), 20_000)]
    assert [g[0] for g in got] == ["index 0", "index 1", "index 2", "index 3", "index 4"]
    assert got[1][1].startswith("record is ") and got[1][2] is None
    assert [g[2] for g in got[2:]] == [run_obj(2, True), 123456789, run_obj(3, True)]
    assert got[0][2] == run_obj(1, True)


def test_an_oversized_array_element_cut_off_by_the_end_of_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "WINDOW", 1000)
    path = tmp_path / "runs.json"
    path.write_text("[" + json.dumps(run_obj(1, True)) + ', {"messages": "' + "x" * 50_000, encoding="utf-8")
    got = [(r.location, r.error) for r in read_records(path, Redactions(), 20_000)]
    assert got == [("index 0", None), ("index 1", "record is more than 50.0 KB, over ingest.max_record_bytes (20.0 KB)")]


def test_an_oversized_array_element_through_the_cli(runner, cli_bank, bank_sql):
    configure(cli_bank, max_record_bytes=3000)
    write_json(cli_bank / "runs.json", [run_obj(1, True), big_tool_run(2, 10_000), run_obj(3, False)])
    code, out = ingest_json(runner, "runs.json")
    assert (code, out["added"], out["rejected"]) == (1, 2, 1)
    size = len(json.dumps(big_tool_run(2, 10_000))) / 1000
    assert out["rejects"] == [f"runs.json index 1: record is {size:.1f} KB, over ingest.max_record_bytes (3.0 KB)"]
    assert bank_sql("SELECT location, line FROM rejects") == [("index 1", None)]


def test_a_gigantic_json_file_is_one_reject_and_the_other_files_are_read(runner, cli_bank, bank_sql):
    configure(cli_bank, max_record_bytes="10KB")
    write_json(cli_bank / "one.json", big_tool_run(1, 50_000))  # one run object: the file is the record
    write_jsonl(cli_bank / "ok.jsonl", [run_obj(2, True)])
    result = runner.invoke(app, ["ingest", "one.json", "ok.jsonl"])
    assert result.exit_code == 1
    no_traceback(result)
    size = (cli_bank / "one.json").stat().st_size / 1000
    assert error_lines(result) == [f"Error: one.json: record is {size:.1f} KB, over ingest.max_record_bytes (10.0 KB)"]
    assert bank_sql("SELECT count(*) FROM trajectories") == [(1,)]
    assert bank_sql("SELECT source_uri, location FROM rejects") == [("one.json", "file")]


def test_an_oversized_archive_entry_is_a_reject(runner, cli_bank, bank_sql):
    configure(cli_bank, max_record_bytes="15.5KB")  # the samples of task atlantis are 16.7 and 17.0 KB, the others < 15.1
    shutil.copy(FORMATS / "inspect" / "arith.eval", cli_bank / "arith.eval")
    code, out = ingest_json(runner, "arith.eval")
    assert (code, out["added"], out["rejected"]) == (1, 4, 2)
    assert sorted(out["rejects"]) == [
        "arith.eval samples/atlantis_epoch_1.json: record is 16.7 KB, over ingest.max_record_bytes (15.5 KB)",
        "arith.eval samples/atlantis_epoch_2.json: record is 17.0 KB, over ingest.max_record_bytes (15.5 KB)"]


# ---------------------------------------------------------------- max_messages


def test_a_run_with_too_many_messages_keeps_its_head_and_tail_around_a_marker(runner, cli_bank, bank_sql):
    configure(cli_bank, max_messages=10)
    write_jsonl(cli_bank / "r.jsonl", [long_run(1, 25), long_run(2, 10)])
    result = runner.invoke(app, ["ingest", "r.jsonl"])
    assert result.exit_code == 0, result.output
    assert "1 run(s) truncated to the ingest limits" in squash(result.stdout)
    (run_id, n_steps), = bank_sql("SELECT id, n_steps FROM trajectories WHERE n_steps = 25")
    steps = bank_sql("SELECT seq, role, name, text FROM steps WHERE trajectory_id = ? ORDER BY seq", [run_id])
    assert [s[0] for s in steps] == [0, 1, 2, 3, 4, 5, 20, 21, 22, 23, 24]  # seq: the index in the original run
    assert [s[3] for s in steps[:5]] == [f"run 1 message {k}" for k in range(5)]
    assert steps[5][1:] == ("system", "memkit", "…[truncated 15 messages]…")
    assert [s[3] for s in steps[6:]] == [f"run 1 message {k}" for k in range(20, 25)]
    assert bank_sql("SELECT trajectory_id, seq, what, limit_name, original, kept FROM truncations") == [
        (run_id, None, "messages", "max_messages", 25, 10)]
    assert bank_sql("SELECT raw IS NOT NULL FROM trajectories WHERE id = ?", [run_id]) == [(True,)]  # small: kept
    assert bank_sql("SELECT count(*) FROM steps WHERE trajectory_id <> ?", [run_id]) == [(10,)]  # at the limit: whole
    stats = runner.invoke(app, ["stats", "--json"])
    assert json.loads(stats.stdout)["truncated_runs"] == 1
    assert "1 run(s) truncated" in runner.invoke(app, ["stats"]).stdout


# ---------------------------------------------------------------- max_run_bytes


def test_a_gigantic_tool_result_is_cut_with_a_marker_and_recorded(runner, cli_bank, bank_sql):
    configure(cli_bank, max_run_bytes="20KB")
    write_jsonl(cli_bank / "r.jsonl", [big_tool_run(1, 100_000), run_obj(2, True)])
    code, out = ingest_json(runner, "r.jsonl")
    assert (code, out["added"], out["truncated"]) == (0, 2, 1)
    (run_id,), = bank_sql("SELECT trajectory_id FROM truncations WHERE what = 'tool_result'")
    (content,), = bank_sql("SELECT content FROM tool_results WHERE trajectory_id = ?", [run_id])
    (text,), = bank_sql("SELECT text FROM steps WHERE trajectory_id = ? AND role = 'tool'", [run_id])
    assert content == text
    (kept,), = bank_sql("SELECT kept FROM truncations WHERE what = 'tool_result'")
    assert text == "A" * (kept - kept // 2) + f"…[truncated {100_000 - kept} bytes]…" + "Z" * (kept // 2)
    # The short messages are whole, and the run's text fits the limit.
    assert bank_sql("SELECT text FROM steps WHERE trajectory_id = ? AND role = 'user'", [run_id]) == [
        ("Please change my booking number 1.",)]
    (total,), = bank_sql("SELECT sum(strlen(coalesce(text, ''))) FROM steps WHERE trajectory_id = ?", [run_id])
    assert 19_000 < total <= 20_000
    # The raw record (over the limit too) is not stored; the truncations table says so.
    assert bank_sql("SELECT raw IS NULL FROM trajectories WHERE id = ?", [run_id]) == [(True,)]
    rows = bank_sql("SELECT seq, what, limit_name, original FROM truncations ORDER BY what")
    raw_size = len(json.dumps(big_tool_run(1, 100_000)))
    assert rows == [(None, "raw", "max_run_bytes", raw_size), (3, "tool_result", "max_run_bytes", 100_000)]
    assert bank_sql("SELECT count(*) FROM trajectories WHERE raw IS NULL") == [(1,)]


def test_purging_a_truncated_run_removes_its_truncations_and_it_can_be_stored_again(runner, cli_bank, bank_sql):
    configure(cli_bank, max_run_bytes="20KB")
    write_jsonl(cli_bank / "r.jsonl", [big_tool_run(1, 100_000), run_obj(2, True)])
    ingest_json(runner, "r.jsonl")
    before = bank_sql("SELECT trajectory_id, seq, what, original, kept FROM truncations ORDER BY ALL")
    assert len(before) == 2
    purged = runner.invoke(app, ["purge", "--source", "r.jsonl", "--yes"])
    assert purged.exit_code == 0, purged.output
    assert bank_sql("SELECT count(*) FROM truncations") == [(0,)]
    code, out = ingest_json(runner, "r.jsonl")
    assert (code, out["added"], out["truncated"]) == (0, 2, 1)
    assert bank_sql("SELECT trajectory_id, seq, what, original, kept FROM truncations ORDER BY ALL") == before


def test_long_tool_arguments_and_multibyte_text_are_cut_too(runner, cli_bank, bank_sql):
    configure(cli_bank, max_run_bytes=4000)
    run = run_obj(1, True, tool="write_file", tool_args={"path": "a.txt", "content": "é" * 5000},
                  user_text="ü" * 3000)
    write_jsonl(cli_bank / "r.jsonl", [run])
    code, out = ingest_json(runner, "r.jsonl")
    assert (code, out["truncated"]) == (0, 1)
    cuts = dict(((w, s), (o, k)) for s, w, o, k in bank_sql("SELECT seq, what, original, kept FROM truncations"))
    assert set(cuts) == {("raw", None), ("text", 1), ("arguments", 2)}
    (args, args_raw), = bank_sql("SELECT arguments, arguments_raw FROM tool_calls")
    assert args is None and args_raw.startswith('{"path":"a.txt","content":"éé') and "…[truncated " in args_raw
    (user,), = bank_sql("SELECT text FROM steps WHERE seq = 1")
    assert user.startswith("üü") and user.endswith("üü") and len(user.encode()) <= cuts[("text", 1)][1] + 40


# ---------------------------------------------------------------- configuration, idempotence, API


def test_the_defaults_are_in_memkit_yaml_and_leave_the_bundled_sample_whole(runner, cli_bank, bank_sql):
    ingest = yaml.safe_load(DEFAULT_CONFIG_TEXT)["ingest"]
    assert (ingest["max_record_bytes"], ingest["max_messages"], ingest["max_run_bytes"]) == ("256MB", 10000, "64MB")
    assert IngestConfig.model_validate(ingest) == IngestConfig()
    code, out = ingest_json(runner, str(SLICE))
    assert (code, out["rejected"], out["truncated"]) == (0, 0, 0)
    assert bank_sql("SELECT count(*) FROM truncations") == [(0,)]


@pytest.mark.parametrize("off", [0, None])
def test_zero_or_null_means_no_limit(runner, cli_bank, bank_sql, off):
    configure(cli_bank, max_record_bytes=off, max_messages=off, max_run_bytes=off)
    write_jsonl(cli_bank / "r.jsonl", [long_run(1, 12_000), big_tool_run(2, 300_000)])
    code, out = ingest_json(runner, "r.jsonl")
    assert (code, out["added"], out["truncated"]) == (0, 2, 0)
    assert bank_sql("SELECT count(*) FROM steps") == [(12_000 + 5,)]


def test_a_bad_limit_in_memkit_yaml_is_one_clear_error(runner, cli_bank):
    configure(cli_bank, max_run_bytes="lots")
    write_jsonl(cli_bank / "r.jsonl", [run_obj(1, True)])
    result = runner.invoke(app, ["ingest", "r.jsonl"])
    assert result.exit_code == 1
    no_traceback(result)
    assert error_lines(result)[0].startswith("Error: ") and "ingest.max_run_bytes" in error_lines(result)[0]


def test_reingesting_an_oversized_file_adds_nothing(runner, cli_bank, bank_sql):
    configure(cli_bank, max_record_bytes="50KB", max_messages=10, max_run_bytes="20KB")
    write_jsonl(cli_bank / "r.jsonl", [long_run(1, 30), big_tool_run(2, 40_000), big_tool_run(3, 80_000),
                                       run_obj(4, True)])
    first = ingest_json(runner, "r.jsonl")
    tables = "SELECT (SELECT count(*) FROM trajectories), (SELECT count(*) FROM steps), " \
             "(SELECT count(*) FROM truncations), (SELECT count(*) FROM rejects)"
    before = bank_sql(tables)
    second = ingest_json(runner, "r.jsonl")
    assert (first[1]["added"], first[1]["truncated"], first[1]["rejected"]) == (3, 2, 1)
    assert (second[1]["added"], second[1]["duplicates"], second[1]["truncated"], second[1]["rejected"]) == (0, 3, 0, 1)
    assert bank_sql(tables) == before == [(3, 10 + 1 + 5 + 3, 1 + 2, 1)]  # run 3 (80 KB) is the reject


def test_the_python_api_reports_and_queries_truncations(tmp_path):
    memkit.init(tmp_path).close()
    configure(tmp_path, max_messages=5, max_run_bytes="10KB")
    write_jsonl(tmp_path / "r.jsonl", [long_run(1, 9), big_tool_run(2, 30_000), run_obj(3, True)])
    with memkit.open(tmp_path, write=True) as b:
        result = b.ingest(["r.jsonl"])
        assert (result.added, result.truncated, result.rejected) == (3, 2, 0)
        cuts = b.sql("SELECT what, count(*) AS n FROM truncations GROUP BY 1 ORDER BY 1")
        assert dict(cuts.iter_rows()) == {"messages": 1, "raw": 1, "tool_result": 1}
        from memkit import frames

        df = frames.truncations(b.con, source="r.jsonl")
        assert dict(df.schema) == frames.SCHEMAS["truncations"]
        assert sorted(df["record_location"].to_list()) == ["line 1", "line 2", "line 2"]
        steps = b.steps(df.filter(df["what"] == "messages")["run_id"][0])
        assert steps["seq"].to_list() == [0, 1, 2, 3, 7, 8]  # 3 first, the marker, 2 last
        assert steps["text"].to_list()[3] == "…[truncated 4 messages]…"


# ---------------------------------------------------------------- every reader goes through the same limits

SAMPLES = FORMAT_SAMPLES


def test_every_reader_has_a_sample_here():
    assert set(SAMPLES) == set(registry())


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_reader_is_held_to_the_run_limits(runner, tmp_path, name):
    src = SAMPLES[name] or write_jsonl(tmp_path / "chat.jsonl", [long_run(1, 8), big_tool_run(2, 5000)])
    args = ["--format", name] + (["--map", str(FORMATS / "mapped" / "support-map.yaml")] if name == "mapped" else [])
    counts = {}
    for bank, caps in (("whole", dict(max_messages=0, max_run_bytes=0)), ("cut", dict(max_messages=3, max_run_bytes=1500))):
        root = tmp_path / bank
        memkit.init(root).close()
        configure(root, **caps)
        with memkit.open(root, write=True) as b:
            result = b.ingest([src], format=name, mapping=FORMATS / "mapped" / "support-map.yaml" if name == "mapped" else None)
            counts[bank] = (result.added, result.rejected)
            runs = b.sql("SELECT id, n_steps FROM trajectories ORDER BY id").rows()
            stored = dict(b.sql("""SELECT trajectory_id, count(*) FROM steps GROUP BY 1""").rows())
            text = dict(b.sql("""SELECT s.trajectory_id, sum(strlen(coalesce(s.text, ''))
                                        + strlen(coalesce(s.reasoning, '')))
                                        + coalesce(max(c.args), 0)
                                 FROM steps s LEFT JOIN (SELECT trajectory_id, sum(strlen(coalesce(
                                     arguments::VARCHAR, arguments_raw, ''))) AS args FROM tool_calls GROUP BY 1) c
                                   USING (trajectory_id) GROUP BY 1""").rows())
            cut_ids = {r[0] for r in b.sql("SELECT DISTINCT trajectory_id FROM truncations WHERE what = 'messages'").rows()}
            truncated = result.truncated
        if bank == "whole":
            whole_runs = runs
            assert truncated == 0
            continue
        assert runs == whole_runs  # same runs, same ids, same original message counts
        assert counts["cut"] == counts["whole"]
        assert cut_ids == {rid for rid, n in runs if n > 3}
        assert all(stored.get(rid, 0) <= 4 for rid, _ in runs)  # 3 messages and the marker
        assert all(total <= 1500 for total in text.values()), text
    assert whole_runs and any(n > 3 for _, n in whole_runs), "the sample should be long enough to be cut"


# ---------------------------------------------------------------- the pieces


def test_only_the_longest_texts_are_cut_to_fit_the_budget():
    rng = random.Random(5)
    for _ in range(500):
        sizes = [rng.choice([rng.randint(0, 50), rng.randint(0, 5000)]) for _ in range(rng.randint(1, 30))]
        budget = rng.randint(1, max(sum(sizes), 1))
        c = _cap(sizes, budget)
        assert sum(min(s, c) for s in sizes) <= budget
        assert sum(min(s, c + 1) for s in sizes) > budget or c >= max(sizes)


def test_shorten_keeps_both_ends_and_says_how_much_went():
    text, kept = shorten("a" * 500 + "b" * 500, 1000, 100)
    assert text.startswith("a" * 30) and text.endswith("b" * 30) and "…[truncated " in text
    assert f"…[truncated {1000 - kept} bytes]…" in text and len(text.encode()) <= 100


def test_normal_runs_cost_two_comparisons():
    from memkit.model import Run, Step

    limits = Limits.from_config()
    run = Run(steps=[Step("user", "hi")] * 3, raw=None)
    assert not limits.exceeded(run, 10_000)
    assert limits.exceeded(Run(steps=[Step("user", "hi")] * 10_001, raw=None), 10)
    assert limits.exceeded(run, 64_000_001)
