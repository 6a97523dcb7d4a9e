"""Secrets in runs are redacted before anything is stored or exported."""

import json
import string

import duckdb
import pytest

import memkit
from memkit.cli.main import app
from helpers import messages, run_obj, write_jsonl

# Letters only: the heuristic masks tokens that mix digits and letters as <ID>, so a key with digits could
# vanish from a lesson without any redaction. These would survive unless redacted.
OPENAI_KEY = "sk-proj-" + (string.ascii_letters[:30])
GITHUB_TOKEN = "ghp_" + (string.ascii_letters[10:46])
CANARY = "canaryvisiblemarker"  # not a secret: proves the raw-byte search can see stored text
assert len(OPENAI_KEY) == len("sk-proj-") + 30 and len(GITHUB_TOKEN) == 4 + 36


def _secret_runs() -> list[dict]:
    runs = []
    for i in range(3):
        msgs = messages(i, user_text=f"{CANARY} my key is {OPENAI_KEY} and my token is {GITHUB_TOKEN}",
                        tool="call_api", tool_args={"api_key": OPENAI_KEY, "token": GITHUB_TOKEN},
                        tool_result=f"Error: credentials {OPENAI_KEY} rejected")
        msgs.append({"role": "assistant", "content": f"I used {GITHUB_TOKEN} to retry."})
        runs.append({"messages": msgs, "success": i == 0, "metadata": {"note": f"token {GITHUB_TOKEN}"}})
    return runs


def _text_columns(con) -> list[tuple[str, str]]:
    return con.execute("""SELECT table_name, column_name FROM information_schema.columns
                          WHERE table_schema = 'main' AND data_type IN ('VARCHAR', 'JSON', 'BLOB')""").fetchall()


def _hits(con, needle: str) -> list[str]:
    found = []
    for table, column in _text_columns(con):
        n = con.execute(f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR) LIKE ?',
                        [f"%{needle}%"]).fetchone()[0]
        if n:
            found.append(f"{table}.{column}")
    return found


def _bank_bytes(root) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((root / ".memkit").rglob("*")) if p.is_file())


@pytest.fixture
def secret_bank(runner, tmp_path):
    runner.invoke(app, ["init"])
    write_jsonl(tmp_path / "runs.jsonl", _secret_runs())
    write_json_list = tmp_path / "runs.json"
    write_json_list.write_text(json.dumps([run_obj(7, True, user_text=f"{CANARY} list {OPENAI_KEY}")]))
    result = runner.invoke(app, ["ingest", "runs.jsonl", "runs.json", "--json"])
    assert result.exit_code == 0, result.output
    distill = runner.invoke(app, ["distill"])
    assert distill.exit_code == 0, distill.output
    return json.loads(result.stdout)


def test_ingest_reports_what_it_redacted(secret_bank):
    # per run: user text, tool arguments, tool result, assistant text, metadata
    assert secret_bank["redactions"] == {"openai-key": 3 * 3 + 1, "github-token": 3 * 4}


def test_secrets_are_in_no_column_of_the_bank(secret_bank, tmp_path):
    with memkit.open(tmp_path) as b:
        assert _hits(b.con, CANARY)  # the search works
        assert _hits(b.con, "[REDACTED:openai-key]") and _hits(b.con, "[REDACTED:github-token]")
        for secret in (OPENAI_KEY, GITHUB_TOKEN, OPENAI_KEY[8:], GITHUB_TOKEN[4:]):
            assert _hits(b.con, secret) == [], secret
        # Redacted text still parses: tool arguments are JSON with the placeholder.
        args = json.loads(b.con.execute("SELECT arguments FROM tool_calls LIMIT 1").fetchone()[0])
        assert args == {"api_key": "[REDACTED:openai-key]", "token": "[REDACTED:github-token]"}


def test_secrets_are_not_in_the_database_file_bytes(secret_bank, tmp_path):
    data = _bank_bytes(tmp_path)
    assert CANARY.encode() in data
    assert OPENAI_KEY[8:].encode() not in data
    assert GITHUB_TOKEN[4:].encode() not in data


def test_secrets_are_not_in_the_playbook_or_exports(secret_bank, runner, tmp_path):
    with memkit.open(tmp_path) as b:
        items = b.load_playbook("default").items
    pitfall = [i for i in items if "tool:call_api" in i.tags and i.section == "pitfalls"]
    assert pitfall, [i.text for i in items]  # the lesson built from the secret-bearing error exists
    assert "credentials" in pitfall[0].text
    texts = [(tmp_path / "playbooks" / "default.yaml").read_text()]
    for target in ("system-prompt", "agents-md", "claude-md", "cursor", "json"):
        result = runner.invoke(app, ["export", "--target", target])
        assert result.exit_code == 0
        texts.append(result.stdout)
    for text in texts:
        assert OPENAI_KEY[8:] not in text and GITHUB_TOKEN[4:] not in text


@pytest.mark.parametrize("name, content", [
    ("bad.jsonl", b'{"messages": [{"role": "user", "content": "key ' + OPENAI_KEY.encode() + b' \xff"}]}\n'),
    ("bad.json", b'{"messages": [{"role": "user", "content": "key ' + OPENAI_KEY.encode() + b'"}'),
])
def test_secrets_in_rejected_records_are_redacted(runner, tmp_path, name, content):
    runner.invoke(app, ["init"])
    (tmp_path / name).write_bytes(content)
    result = runner.invoke(app, ["ingest", name])
    assert result.exit_code == 1
    con = duckdb.connect(str(tmp_path / ".memkit" / "memkit.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM rejects").fetchone() == (1,)
        assert _hits(con, OPENAI_KEY[8:]) == []
    finally:
        con.close()
