"""Redaction with detect-secrets' patterns and memkit's own, redaction records, purge, and streamed
JSON arrays with hostile records. Real banks under tmp_path, through the CLI and the Python API."""

from __future__ import annotations

import json
import string
import subprocess

import orjson
import pytest

import memkit
from memkit.cli.main import app
from memkit.stores import records as records_module
from memkit.stores.records import Redactions, read_records
from memkit.stores.redact import Redactor, redact
from helpers import error_lines, messages, no_traceback, run_obj, squash, u_escaped, write_json, write_jsonl

L = string.ascii_letters  # letters only: the heuristic masks tokens that mix digits in as <ID>
# Fake secrets, assembled here so that no scanner mistakes this file for a leak. Each `tail` is
# what must never be found in the bank: the part after the well-known prefix. A case named after
# its detector; the other forms of a detector's secret name it as a third element.
SECRETS = {
    "openai-key": ("sk-proj-", L[:40]),
    "anthropic-key": ("sk-ant-api03-", L[5:45]),
    "aws-access-key": ("AKIA", "QWERTYUIOPASDFGH"),
    "github-token": ("ghp_", L[10:46]),
    "slack-token": ("xoxb-", "1234567890-" + L[20:40].lower()),
    "google-api-key": ("AIza", L[8:43]),
    "private-key": ("-----BEGIN RSA PRIVATE KEY-----\n", "MIIEowIBAAKCAQEA" + L[:30] + "\n-----END RSA PRIVATE KEY-----"),
    "jwt": ("eyJhbGciOiJIUzI1NiJ9.", "eyJzdWIiOiJhZ2VudCJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"),
    "bearer-token": ("Authorization: Bearer ", "zXcVbNmAsDfGhJkLqWeRtY"),
    "url-password": ("postgres://admin:", "HunterTwoPassword@db.internal/app"),
    "stripe-key": ("sk_live_", L[26:50]),
    "gitlab-token": ("glpat-", L[2:24]),
    # An AWS secret key as a credentials file, an `export` line and STS's JSON (as text) write it.
    "aws-secret-key": ("[default]\naws_secret_access_key = ", L[3:43]),
    "aws-secret-key-env": ("export AWS_SECRET_ACCESS_KEY=", L[7:47], "aws-secret-key"),
    "aws-secret-key-sts": ('{"Credentials": {"SecretAccessKey": "', L[11:51] + '", "Expiration": "soon"}}', "aws-secret-key"),
    "password-field": ('{"password": "', "HunterSecretWordPlain" + '"}', "secret-field"),
}
# OpenAI tool arguments are a JSON string: secret-named fields inside it (issue 3's reviewer).
ARGUMENT_SECRETS = {"password": "HunterThreeSecret!", "api_key": "plainApiKeyValueLetters"}


def secret(kind: str) -> str:
    prefix, tail = SECRETS[kind][:2]
    return prefix + tail


def detector(kind: str) -> str:
    return SECRETS[kind][2] if len(SECRETS[kind]) > 2 else kind


def tail(kind: str) -> str:
    t = SECRETS[kind][1]
    return t.split("@")[0] if kind == "url-password" else t.split("\n")[0].split('"')[0]


# The three ways the fixture writes a record: as Python's json does, with every `/` escaped as
# `\\/` (PHP's and Java's writers), and with every character of its strings `\\u`-escaped.
ENCODINGS = [json.dumps, lambda v: json.dumps(v).replace("/", "\\/"), u_escaped]


def _runs_with_secrets() -> list[dict]:
    runs = []
    for i in range(3):
        for kind in SECRETS:
            s = secret(kind)
            msgs = messages(i * 100 + len(runs), user_text=f"use {s} please",
                            tool=f"call_{kind.replace('-', '_')}", tool_args={"credential": s, "note": f"nested {s}"},
                            tool_result=f"Error: credential {s} rejected")
            # The secret is also a key of the metadata: its path must not carry it.
            runs.append({"messages": msgs, "success": i == 0, "metadata": {"env": {"SECRET": s}, "seen": {s: True}}})
    for i in range(3):
        runs.append({"messages": messages(900 + i, tool="login", tool_args=ARGUMENT_SECRETS), "success": True})
    return runs


def _write_encoded(path, runs: list[dict], array: bool) -> None:
    """Run k written with ENCODINGS[k % 3], as JSON Lines or as one JSON array."""
    texts = [ENCODINGS[k % 3](r) for k, r in enumerate(runs)]
    path.write_text("[" + ",\n".join(texts) + "]" if array else "".join(t + "\n" for t in texts), encoding="utf-8")


def _text_hits(con, needle: str) -> list[str]:
    cols = con.execute("""SELECT table_name, column_name FROM information_schema.columns
                          WHERE table_schema = 'main' AND data_type IN ('VARCHAR', 'JSON', 'BLOB', 'VARCHAR[]')""").fetchall()
    found = []
    for table, column in cols:
        n = con.execute(f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR) LIKE ?', [f"%{needle}%"]).fetchone()[0]
        if n:
            found.append(f"{table}.{column}")
    return found


def _tree_bytes(folder) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.fixture
def secret_bank(runner, tmp_path):
    assert runner.invoke(app, ["init"]).exit_code == 0
    runs = _runs_with_secrets()
    _write_encoded(tmp_path / "runs.jsonl", runs[: len(runs) // 2], array=False)
    _write_encoded(tmp_path / "runs.json", runs[len(runs) // 2:], array=True)  # a JSON array: the streamed path
    result = runner.invoke(app, ["ingest", "runs.jsonl", "runs.json", "--json"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["distill"]).exit_code == 0
    return json.loads(result.stdout)


# ---------------------------------------------------------------- redaction


def test_every_kind_is_reported_by_its_detector(secret_bank):
    assert set(secret_bank["redactions"]) >= {detector(k) for k in SECRETS}
    # user text, tool arguments (twice, in a JSON string inside JSON), tool result, a metadata key;
    # metadata.env.SECRET is a secret-named field, redacted whatever its value looks like.
    for kind in SECRETS:
        assert secret_bank["redactions"][detector(kind)] >= 3 * 5, kind
    assert secret_bank["redactions"]["aws-secret-key"] == 3 * 3 * 5
    # metadata.env.SECRET of every run, the five places of the password case, two fields of the arguments
    assert secret_bank["redactions"]["secret-field"] == 3 * len(SECRETS) + 3 * 5 + 3 * len(ARGUMENT_SECRETS)


def test_no_fake_key_reaches_duckdb_lancedb_a_playbook_or_an_export(secret_bank, runner, tmp_path):
    # Every case was written plain, with `\\/` escapes and with `\\u` escapes (ENCODINGS).
    tails = [tail(kind) for kind in SECRETS] + list(ARGUMENT_SECRETS.values())
    with memkit.open(tmp_path) as b:
        for needle in tails:
            assert _text_hits(b.con, needle) == [], needle
        for kind in SECRETS:
            assert _text_hits(b.con, f"[REDACTED:{detector(kind)}]"), kind
        run_ids = [r[0] for r in b.con.execute("SELECT id FROM trajectories ORDER BY id").fetchall()]
        items = b.load_playbook("default").items
        assert b.con.execute("SELECT arguments FROM tool_calls WHERE name = 'login' LIMIT 1").fetchall() == \
            [('{"password":"[REDACTED:secret-field]","api_key":"[REDACTED:secret-field]"}',)]
    assert any("[REDACTED:" in i.text for i in items)  # lessons were built from the secret-bearing errors
    texts = [_tree_bytes(tmp_path / ".memkit"), _tree_bytes(tmp_path / "playbooks")]  # DuckDB file, LanceDB, YAML
    for target in ("system-prompt", "agents-md", "claude-md", "cursor", "json"):
        result = runner.invoke(app, ["export", "--target", target])
        assert result.exit_code == 0, result.output
        texts.append(result.stdout.encode())
    commands = [["stats", "--json"], ["playbook", "show", "default", "--all", "--json"], ["runs", "list", "--json"]]
    commands += [["runs", "export", run_id, "--format", "atif"] for run_id in run_ids]
    for command in commands:
        result = runner.invoke(app, command)
        if result.exit_code == 2 and "no such command" in result.output.lower():
            continue  # a command this build does not have
        assert result.exit_code == 0, (command, result.output)
        texts.append(result.stdout.encode())
    for needle in tails:
        assert all(needle.encode() not in t for t in texts), needle


def test_redactions_are_recorded_per_record_and_field_without_the_secret(secret_bank, tmp_path, bank_sql):
    rows = bank_sql("SELECT s.uri, r.location, r.detector, r.count, r.paths FROM redactions r "
                    "JOIN sources s ON s.sha256 = r.source_sha256 ORDER BY 1, 2, 3")
    assert {r[2] for r in rows} >= {detector(k) for k in SECRETS}
    line1 = {r[2]: (r[3], r[4]) for r in rows if r[0] == "runs.jsonl" and r[1] == "line 1"}
    assert line1 == {"openai-key": (5, ['metadata.seen["[REDACTED:openai-key]"]', "messages[1].content",
                                        "messages[2].tool_calls[0].function.arguments", "messages[3].content"]),
                     "secret-field": (1, ["metadata.env.SECRET"])}
    index0 = {r[2] for r in rows if r[0] == "runs.json" and r[1] == "index 0"}
    assert len(index0) == 2  # the array's records are recorded by index
    for needle in [tail(kind) for kind in SECRETS] + list(ARGUMENT_SECRETS.values()):
        assert not any(needle in json.dumps(r) for r in rows)
    # The run a redaction belongs to is one join away; here each record is one run.
    joined = bank_sql("""SELECT count(*) FROM redactions r JOIN trajectories t ON list_contains(r.run_ids, t.id)
                         WHERE t.source_sha256 = r.source_sha256 AND t.record_location = r.location""")[0][0]
    assert joined == len(rows)


def test_stats_counts_redactions(secret_bank, runner):
    out = json.loads(runner.invoke(app, ["stats", "--json"]).stdout)
    assert out["redactions"] == sum(secret_bank["redactions"].values())
    assert f"{out['redactions']} secrets redacted" in squash(runner.invoke(app, ["stats"]).stdout)


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_each_detector_replaces_the_whole_secret(kind):
    text, found = redact(f"before {secret(kind)} after")
    assert found == {detector(kind): 1}, text
    assert tail(kind) not in text and text.startswith("before ") and text.endswith(" after")


@pytest.mark.parametrize("text, kind", [
    ('{"aws_secret_access_key": "wJalrXUtnFEMIxKxMDENGxbPxRfiCYEXAMPLEKEY"}', "aws-secret-key"),
    ('{"db_password": "correct horse"}', "secret-field"),
    ("aws key = 'wJalrXUtnFEMIxKxMDENGxbPxRfiCYEXAMPLEKEY'", "aws-secret-key"),
    ("hook https://hooks.slack.com/services/TABCDEFGH/BABCDEFGH/abcdefghijklmnopqrstuvwx", "slack-webhook"),
    ("SG." + L[:22] + "." + L[:43], "sendgrid-key"),
    ("AC" + "abcdefghij" * 3 + "ab", "twilio-key"),
    ("github_pat_" + L[:50], "github-token"),
    ('headers: {"Authorization": "Basic ' + "dXNlcjpwYXNzd29yZA==" + '"}', "basic-auth-header"),
])
def test_more_detectors_from_detect_secrets_and_memkit(text, kind):
    out, found = redact(text)
    assert kind in found, (out, found)


@pytest.mark.parametrize("text", [
    "task-1234567890abcdefghijklmnop finished", "reservation 4WNQ9Z on 2024-05-20 10:30:00, total 1,234.56",
    "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "id 550e8400-e29b-41d4-a716-446655440000",
    "the bearer of bad news", "see https://example.com/docs?q=1", "user mia.li3818@example.com, phone +1 415-555-2671",
])
def test_ordinary_text_is_left_alone(text):
    assert redact(text) == (text, {})


def test_every_detector_passes_its_own_screen():
    r = Redactor(emails=True, phones=True)
    kinds = [*map(detector, SECRETS), "email", "phone"]
    samples = [orjson.dumps({"text": f"x {secret(k)} y"}) for k in SECRETS] + [b"mail a.b@example.org", b"call +44 20 7946 0958"]
    extra = {"mailchimp-key": "0123456789abcdef0123456789abcdef-us12", "twilio-key": "SK" + "0123456789abcdef" * 2,
             "sendgrid-key": "SG." + L[:22] + "." + L[:43], "slack-webhook": "https://hooks.slack.com/services/TABC/BABC/xyz"}
    kinds += list(extra)
    samples += [orjson.dumps({"text": f"x {v} y"}) for v in extra.values()]
    assert all(r.flag(samples))
    for kind, active in zip(kinds, r.active(samples)):
        assert kind in [d.name for d in active], kind
    assert not any(r.flag([b"nothing here", orjson.dumps(run_obj(1, True))]))


def test_secret_pattern_table_matches_the_installed_detect_secrets():
    pytest.importorskip("detect_secrets")
    from memkit.stores.redact import detect_secrets_table
    from memkit.stores.secret_patterns import DETECT_SECRETS_VERSION, PATTERNS

    version, rows = detect_secrets_table()
    assert (version, rows) == (DETECT_SECRETS_VERSION, PATTERNS), \
        "detect-secrets changed: run `python -m memkit.stores.redact --sync` and review the diff"


def test_emails_and_phones_are_redacted_when_configured(runner, tmp_path, bank_sql):
    runner.invoke(app, ["init"])
    text = "reach me at jane.doe@example.com or +1 415-555-2671; booking 2024-05-20, id 4177283103"
    write_jsonl(tmp_path / "a.jsonl", [run_obj(1, True, user_text=text)])
    assert runner.invoke(app, ["ingest", "a.jsonl"]).exit_code == 0
    assert bank_sql("SELECT text FROM steps WHERE role = 'user'") == [(text,)]  # off by default
    config = (tmp_path / "memkit.yaml").read_text()
    (tmp_path / "memkit.yaml").write_text(config.replace("  emails: false", "  emails: true").replace("  phones: false", "  phones: true"))
    write_jsonl(tmp_path / "b.jsonl", [run_obj(2, True, user_text=text)])
    result = runner.invoke(app, ["ingest", "b.jsonl", "--json"])
    assert json.loads(result.stdout)["redactions"] == {"email": 1, "phone": 1}
    assert ("reach me at [REDACTED:email] or [REDACTED:phone]; booking 2024-05-20, id 4177283103",) in \
        bank_sql("SELECT text FROM steps WHERE role = 'user'")


def test_an_unknown_detector_in_the_config_is_one_line(runner, tmp_path):
    runner.invoke(app, ["init"])
    (tmp_path / "memkit.yaml").write_text("redact:\n  disable: [twilio-key, no-such-thing]\n")
    write_jsonl(tmp_path / "a.jsonl", [run_obj(1, True)])
    result = runner.invoke(app, ["ingest", "a.jsonl"])
    assert result.exit_code == 1
    no_traceback(result)
    assert error_lines(result)[0].startswith("Error: redact.disable: unknown detector(s) no-such-thing; known: ")


def test_a_disabled_detector_lets_its_matches_through(runner, tmp_path, bank_sql):
    runner.invoke(app, ["init"])
    (tmp_path / "memkit.yaml").write_text("redact:\n  disable: [stripe-key]\n")
    write_jsonl(tmp_path / "a.jsonl", [run_obj(1, True, user_text=f"k {secret('stripe-key')} and {secret('openai-key')}")])
    assert runner.invoke(app, ["ingest", "a.jsonl"]).exit_code == 0
    assert bank_sql("SELECT text FROM steps WHERE role = 'user'") == [(f"k {secret('stripe-key')} and [REDACTED:openai-key]",)]


# ---------------------------------------------------------------- streamed JSON arrays and hostile records


def _locations(bank_sql) -> list[str]:
    return [r[0] for r in bank_sql("SELECT record_location FROM trajectories ORDER BY ingested_at, record_location")]


@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_array_streams_across_windows_and_keeps_index_locations(runner, tmp_path, bank_sql, monkeypatch, indent):
    monkeypatch.setattr(records_module, "WINDOW", 512)  # every record crosses a window boundary
    runs = [run_obj(i, i % 2 == 0, user_text=f'tricky "quotes" ] }} {{ [ \\ and {secret("github-token")} {i}') for i in range(40)]
    runner.invoke(app, ["init"])
    (tmp_path / "runs.json").write_text("\ufeff" + json.dumps(runs, indent=indent), encoding="utf-8")
    result = runner.invoke(app, ["ingest", "runs.json", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["added"], out["rejected"], out["redactions"]) == (40, 0, {"github-token": 40})
    assert sorted(r[0] for r in bank_sql("SELECT record_location FROM trajectories")) == sorted(f"index {i}" for i in range(40))
    # The same runs as JSON Lines are the same runs (ids hash content, not bytes).
    write_jsonl(tmp_path / "runs.jsonl", runs)
    again = json.loads(runner.invoke(app, ["ingest", "runs.jsonl", "--json"]).stdout)
    assert (again["added"], again["duplicates"]) == (0, 40)


def test_a_bare_message_list_file_is_still_one_run(runner, tmp_path, bank_sql):
    runner.invoke(app, ["init"])
    write_json(tmp_path / "one.json", messages(1))
    assert runner.invoke(app, ["ingest", "one.json"]).exit_code == 0
    assert bank_sql("SELECT record_location, n_steps FROM trajectories") == [("index 0", 3)]


def _hostile_parts() -> list[bytes]:
    good = [orjson.dumps(run_obj(i, True)) for i in range(4)]
    deep = b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b', "success": true}'
    bad_utf8 = b'{"messages": [{"role": "user", "content": "key ' + secret("openai-key").encode() + b' \xff"}], "success": true}'
    big = orjson.dumps({"messages": [{"role": "user", "content": "x" * (50 << 20)},
                                     {"role": "assistant", "content": "done"}], "success": True})
    return [good[0], deep, bad_utf8, big, good[1], good[2], good[3]]


def test_hostile_records_in_a_json_array_fail_only_themselves(runner, tmp_path, bank_sql):
    parts = _hostile_parts()
    runner.invoke(app, ["init"])
    (tmp_path / "hostile.json").write_bytes(b"[" + b",\n".join(parts[:-1]) + b",\n" + parts[-1][:-20])  # truncated
    result = runner.invoke(app, ["ingest", "hostile.json", "--json"])
    assert result.exit_code == 1
    no_traceback(result)
    rejects = bank_sql("SELECT location, regexp_replace(reason, 'byte [0-9]+', 'byte N') FROM rejects ORDER BY location")
    assert rejects == [
        ("index 1", "nested too deeply (more than 1024 levels)"),
        ("index 2", "not valid UTF-8 (byte N)"),
        ("index 6", "truncated (the file ends inside this record)"),
    ]
    assert sorted(r[0] for r in bank_sql("SELECT record_location FROM trajectories")) == ["index 0", "index 3", "index 4", "index 5"]
    assert bank_sql("SELECT max(length(text)) FROM steps") == [(50 << 20,)]
    assert all(tail("openai-key") not in bytes(r[0]).decode("utf-8", "replace") for r in bank_sql("SELECT raw FROM rejects"))


def test_hostile_records_in_json_lines_fail_only_themselves(runner, tmp_path, bank_sql):
    parts = _hostile_parts()
    runner.invoke(app, ["init"])
    (tmp_path / "hostile.jsonl").write_bytes(b"\n".join(parts[:-1]) + b"\n" + parts[-1][:-20])
    result = runner.invoke(app, ["ingest", "hostile.jsonl"])
    assert result.exit_code == 1
    no_traceback(result)
    assert [r[0] for r in bank_sql("SELECT line FROM rejects ORDER BY line")] == [2, 3, 7]
    assert bank_sql("SELECT count(*) FROM trajectories") == [(4,)]


@pytest.mark.parametrize("depth", [300, 1000])
def test_a_secret_in_a_deeply_nested_record_is_redacted_not_a_crash(depth):
    # orjson reads 1024 levels but writes 255: the redacted record is written another way.
    data = ('{"deep": ' + "[" * depth + json.dumps(secret("openai-key")) + "]" * depth + "}").encode()
    [cleaned] = Redactor().redact_batch([data])
    assert cleaned.counts == {"openai-key": 1}
    assert tail("openai-key").encode() not in cleaned.data and b"[REDACTED:openai-key]" in cleaned.data


def test_a_secret_inside_a_large_message_is_redacted(runner, tmp_path, bank_sql):
    runner.invoke(app, ["init"])
    write_json(tmp_path / "big.json", [run_obj(1, True, user_text="y" * (5 << 20) + " " + secret("anthropic-key"))])
    assert runner.invoke(app, ["ingest", "big.json"]).exit_code == 0
    assert bank_sql("SELECT right(text, 25) FROM steps WHERE role = 'user'") == [(" [REDACTED:anthropic-key]",)]


# ---------------------------------------------------------------- purge


def _two_sources(runner, tmp_path):
    runner.invoke(app, ["init"])
    write_jsonl(tmp_path / "a.jsonl", [run_obj(i, True, tool="lookup", user_text=f"a {i} {secret('openai-key')}")
                                       for i in range(3)] + ["not json"])
    write_jsonl(tmp_path / "b.jsonl", [run_obj(10 + i, False, tool="lookup") for i in range(2)])
    assert runner.invoke(app, ["ingest", "a.jsonl", "b.jsonl"]).exit_code == 1  # a.jsonl line 4 is rejected


def _counts(bank_sql) -> dict[str, int]:
    tables = ["sources", "trajectories", "steps", "tool_calls", "tool_results", "rejects", "redactions"]
    return {t: bank_sql(f"SELECT count(*) FROM {t}")[0][0] for t in tables}


def test_purge_by_source_removes_its_runs_rows_rejects_and_redactions(runner, tmp_path, bank_sql):
    _two_sources(runner, tmp_path)
    before = _counts(bank_sql)
    assert before == {"sources": 2, "trajectories": 5, "steps": 25, "tool_calls": 5, "tool_results": 5, "rejects": 1,
                      "redactions": 3}
    result = runner.invoke(app, ["purge", "--source", "a.jsonl", "--yes"])
    assert result.exit_code == 0, result.output
    assert squash(result.stdout) == ("Purged 3 run(s) and 1 source(s) (a.jsonl); rows: 15 steps, 3 tool_calls, "
                                     "3 tool_results, 3 redactions, 1 rejects.")
    assert _counts(bank_sql) == {"sources": 1, "trajectories": 2, "steps": 10, "tool_calls": 2, "tool_results": 2,
                                 "rejects": 0, "redactions": 0}
    assert bank_sql("SELECT DISTINCT source_uri FROM trajectories") == [("b.jsonl",)]


def test_purge_by_run_prefix_keeps_the_source_while_it_has_runs(runner, tmp_path, bank_sql):
    _two_sources(runner, tmp_path)
    run_id = bank_sql("SELECT id FROM trajectories WHERE source_uri = 'a.jsonl' AND record_location = 'line 1'")[0][0]
    result = runner.invoke(app, ["purge", "--run", run_id[:8], "--yes", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["runs"], out["run_ids"], out["sources"]) == (1, [run_id], [])
    assert bank_sql("SELECT count(*) FROM trajectories") == [(4,)]
    assert bank_sql("SELECT location FROM redactions ORDER BY 1") == [("line 2",), ("line 3",)]
    assert bank_sql("SELECT count(*) FROM rejects") == [(1,)]
    # Purging the rest of a.jsonl's runs takes the source, its rejects and redactions with it.
    rest = [r[0] for r in bank_sql("SELECT id FROM trajectories WHERE source_uri = 'a.jsonl'")]
    args = [a for r in rest for a in ("--run", r)]
    assert runner.invoke(app, ["purge", *args, "--yes"]).exit_code == 0
    assert _counts(bank_sql)["sources"] == 1 and _counts(bank_sql)["rejects"] == 0 and _counts(bank_sql)["redactions"] == 0


def test_purge_removes_flags_tags_and_reflections_of_the_runs(runner, tmp_path, bank_sql):
    _two_sources(runner, tmp_path)
    a, b = [r[0] for r in bank_sql("SELECT id FROM trajectories ORDER BY source_uri LIMIT 2")]
    other = bank_sql("SELECT id FROM trajectories WHERE source_uri = 'b.jsonl' LIMIT 1")[0][0]
    with memkit.open(tmp_path, write=True) as bank:
        for run_id in (a, other):
            bank.con.execute("INSERT INTO step_flags VALUES (?, 1, 'override', 'ignore previous')", [run_id])
            bank.con.execute("INSERT INTO item_tags VALUES (?, 'default', 'pit-00001', 'helpful', NULL, 'm', now())", [run_id])
        for ids in ([a, b], [other]):
            bank.con.execute("INSERT INTO reflections VALUES ('default', 'contrast', ?, NULL, 'm', 'h', 'ok', NULL, NULL, "
                             "NULL, now())", [json.dumps(ids)])
    result = runner.invoke(app, ["purge", "--run", a, "--yes", "--json"])
    assert result.exit_code == 0, result.output
    assert {k: v for k, v in json.loads(result.stdout)["deleted"].items() if k in ("step_flags", "item_tags", "reflections")} \
        == {"step_flags": 1, "item_tags": 1, "reflections": 1}
    assert bank_sql("SELECT trajectory_id FROM step_flags") == [(other,)]
    assert bank_sql("SELECT trajectory_id FROM item_tags") == [(other,)]
    assert bank_sql("SELECT trajectory_ids FROM reflections") == [(json.dumps([other]),)]


def test_purge_before_a_date_and_combined_selectors(runner, tmp_path, bank_sql):
    _two_sources(runner, tmp_path)
    result = runner.invoke(app, ["purge", "--before", "2000-01-01", "--yes"])
    assert (result.exit_code, squash(result.stdout)) == (0, "Nothing to purge: no run matches.")
    started = [run_obj(20, True), dict(run_obj(21, True), started_at="1999-12-31T23:00:00Z")]
    for r, ts in zip(started, ("2001-05-01T10:00:00", "1999-12-31T23:00:00Z")):
        r["metadata"] = {"note": ts}
    write_jsonl(tmp_path / "c.jsonl", started)
    runner.invoke(app, ["ingest", "c.jsonl"])
    result = runner.invoke(app, ["purge", "--before", "2099-01-01", "--source", "b.jsonl", "--yes", "--json"])
    assert json.loads(result.stdout)["sources"] == ["b.jsonl"]
    assert bank_sql("SELECT count(*) FROM trajectories") == [(5,)]
    result = runner.invoke(app, ["purge", "--before", "2099-01-01", "--yes", "--json"])
    assert json.loads(result.stdout)["runs"] == 5
    assert bank_sql("SELECT count(*) FROM trajectories") == [(0,)]


def test_purge_asks_first_and_dry_run_changes_nothing(runner, tmp_path, bank_sql):
    _two_sources(runner, tmp_path)
    before = _counts(bank_sql)
    result = runner.invoke(app, ["purge", "--source", "b.jsonl"], input="n\n")
    assert result.exit_code == 1
    assert "Would purge 2 run(s) and 1 source(s) (b.jsonl)" in squash(result.stderr)
    assert "Purge them? [y/N]" in result.stderr
    result = runner.invoke(app, ["purge", "--source", "b.jsonl", "--dry-run", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["dry_run"] is True
    assert _counts(bank_sql) == before
    result = runner.invoke(app, ["purge", "--source", "b.jsonl"], input="y\n")
    assert result.exit_code == 0, result.output
    assert _counts(bank_sql)["trajectories"] == 3


@pytest.mark.parametrize("args, line", [
    ([], "Error: say what to purge: --source FILE, --run ID or --before DATE"),
    (["--source", "nope.jsonl"], "Error: no ingested source matches 'nope.jsonl' (`memkit stats` lists the sources)"),
    (["--run", "zzzz"], "Error: no run with id 'zzzz'"),
    (["--before", "last tuesday"], "Error: --before 'last tuesday' is not a date (YYYY-MM-DD, or an ISO date and time)"),
])
def test_purge_errors_are_one_line(runner, tmp_path, args, line):
    _two_sources(runner, tmp_path)
    result = runner.invoke(app, ["purge", *args, "--yes"])
    assert result.exit_code == 1
    no_traceback(result)
    assert error_lines(result) == [line]


def test_purge_retires_lessons_whose_only_evidence_was_purged(runner, distilled, bank_sql):
    with memkit.open(distilled) as b:
        items = b.load_playbook("default").items
        uri = b.con.execute("SELECT uri FROM sources").fetchone()[0]
    with_evidence = [i.id for i in items if i.provenance.evidence and i.status == "active"]
    assert with_evidence
    result = runner.invoke(app, ["purge", "--source", uri, "--yes", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["playbooks"] == [{"name": "default", "version": 2, "git_commit": None, "retired": with_evidence, "trimmed": []}]
    with memkit.open(distilled) as b:
        pb = b.load_playbook("default")
        assert pb.version == 2
        for item_id in with_evidence:
            item = pb.get(item_id)
            assert (item.status, item.status_reason, item.provenance.evidence) == ("retired", "evidence purged", [])
        log = b.versions("default")
    assert log[-1]["summary"] == f"{len(with_evidence)} RETIRE"
    assert {o["reason"] for o in log[-1]["operations"]} == {"evidence purged"}
    assert _counts(bank_sql)["trajectories"] == 0
    assert bank_sql("SELECT count(*) FROM exposures") == [(0,)]
    assert bank_sql("SELECT count(*) FROM distilled_runs") == [(0,)]
    assert bank_sql("SELECT count(*) FROM insights") == [(0,)]


def test_purging_part_of_the_evidence_keeps_the_lesson(runner, distilled):
    with memkit.open(distilled) as b:
        item = next(i for i in b.load_playbook("default").items if len(i.provenance.evidence) >= 2)
    gone = item.provenance.evidence[0]
    result = runner.invoke(app, ["purge", "--run", gone, "--yes", "--json"])
    out = json.loads(result.stdout)
    assert item.id in out["playbooks"][0]["trimmed"] and item.id not in out["playbooks"][0]["retired"]
    with memkit.open(distilled) as b:
        after = b.load_playbook("default").get(item.id)
    assert after.status == item.status and after.provenance.evidence == item.provenance.evidence[1:]


def test_purge_commits_the_new_playbook_version_in_git(runner, tmp_path, slice_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    runner.invoke(app, ["init"])
    assert runner.invoke(app, ["ingest", str(slice_path)]).exit_code == 0
    assert runner.invoke(app, ["distill"]).exit_code == 0
    result = runner.invoke(app, ["purge", "--source", str(slice_path), "--yes"])
    assert result.exit_code == 0, result.output
    assert "Playbook default v2, git " in squash(result.stdout)
    log = subprocess.run(["git", "log", "--format=%s"], cwd=tmp_path, capture_output=True, text=True).stdout.splitlines()
    assert log[0].startswith("memkit: default v2: ") and "RETIRE" in log[0]
    body = subprocess.run(["git", "log", "-1", "--format=%b"], cwd=tmp_path, capture_output=True, text=True).stdout
    assert "(evidence purged)" in body


def test_purge_from_python_needs_a_writable_bank(distilled):
    with memkit.open(distilled) as b:
        with pytest.raises(memkit.MemkitError, match="read-only"):
            b.purge(before="2099-01-01")
        plan = b.purge(before="2099-01-01", dry_run=True)
        assert plan.runs and plan.dry_run
    with memkit.open(distilled, write=True) as b:
        result = b.purge(before="2099-01-01")
        assert len(result.runs) == len(plan.runs)
        assert b.con.execute("SELECT count(*) FROM trajectories").fetchone() == (0,)


@pytest.mark.parametrize("layout", ["compact", "one-per-line", "crlf-lines", "indent-2", "indent-4", "tabs", "irregular"])
@pytest.mark.parametrize("window", [512, 8 << 20])
def test_every_json_array_layout_reads_the_same_records(tmp_path, monkeypatch, layout, window):
    """Array elements are found by their layout when it is regular (records.py _guess) and by the
    decoder otherwise: the records are the elements, whatever the layout and the window."""
    monkeypatch.setattr(records_module, "WINDOW", window)
    runs = [run_obj(i, i % 2 == 0, user_text='a "}\\n  }," and \\u007d ' + "x" * (i * 37)) for i in range(30)]
    runs[4]["messages"][1]["content"] = "}\n  },\n{"  # what a layout line looks like, inside a string
    if layout == "compact":
        text = json.dumps(runs)
    elif layout in ("one-per-line", "crlf-lines"):
        sep = ",\r\n" if layout == "crlf-lines" else ",\n"
        text = "[" + sep.join(json.dumps(r) for r in runs) + "]\n"
    elif layout == "irregular":  # closing braces not where the layout says
        text = "[\n" + ",\n".join(json.dumps(r, indent=3).replace("\n}", "}") for r in runs) + "\n]"
    else:
        text = json.dumps(runs, indent="\t" if layout == "tabs" else int(layout[-1]))
    path = tmp_path / "runs.json"
    path.write_text(text, encoding="utf-8")
    guess, hits = records_module._guess, []
    monkeypatch.setattr(records_module, "_guess", lambda buf, start: hits.append(guess(buf, start)) or hits[-1])
    records = list(read_records(path, Redactions()))
    guessed = sum(h is not None for h in hits)
    if layout in ("compact", "irregular"):
        assert guessed == 0
    elif window > 512:  # a small window cuts some elements, which the decoder then reads
        assert guessed >= 30  # (and the first element once more: is it a message?)
    assert [r.location for r in records] == [f"index {i}" for i in range(30)]
    assert not any(r.error for r in records)
    assert [orjson.loads(r.data) for r in records] == runs
