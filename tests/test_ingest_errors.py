"""Point 5: bad input loses nothing, is recorded in `rejects`, and is reported in one line, without tracebacks."""

import json

import pytest

from memkit.cli.main import app
from helpers import error_lines, messages, no_traceback, run_obj, squash, stderr_lines, write_json, write_jsonl

REJECTED_LINE = "Error: {n} record(s) rejected; the other records were ingested (see the rejects table)"
from memkit.stores.formats import registry

FORMATS = ", ".join(name for name, r in registry().items() if not r.binary and r.detectable)
NOT_TRAJECTORY = "Error: {path}: not a trajectory file (tried formats: " + FORMATS + ")"


@pytest.fixture(autouse=True)
def cli_bank(runner):
    assert runner.invoke(app, ["init"]).exit_code == 0


def _mixed_file(tmp_path):
    good = [json.dumps(run_obj(i, success=True)) for i in range(3)]
    lines = [
        good[0],                                                         # 1
        '{"messages": [{"role": "user", "content": "cut off',            # 2 not JSON
        good[1],                                                         # 3
        json.dumps({"messages": messages(90), "success": "yes"}),        # 4 wrong type
        json.dumps({"success": True, "reward": 1}),                      # 5 no messages
        "",                                                              # 6 blank: skipped, not a record
        json.dumps({"messages": ["hello"], "success": True}),            # 7 a message that is not an object
        good[2],                                                         # 8
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_good_lines_are_kept_and_bad_lines_go_to_rejects(runner, tmp_path, bank_sql):
    _mixed_file(tmp_path)
    result = runner.invoke(app, ["ingest", "mixed.jsonl"])
    assert result.exit_code == 1
    no_traceback(result)
    assert squash(result.stdout) == ("Ingested 1 file(s), 7 records: 3 runs added (3 success), "
                                     "0 skipped as duplicates, 4 rejected.")
    assert error_lines(result) == [REJECTED_LINE.format(n=4)]
    assert result.stderr.endswith(REJECTED_LINE.format(n=4) + "\n")
    # Each rejected record is listed with where it was.
    for where in ("mixed.jsonl line 2: not valid JSON", "mixed.jsonl line 4: success must be true or false, not str",
                  "mixed.jsonl line 5: no 'messages' in run",
                  "mixed.jsonl line 7: message 0: expected an object with a string 'role'"):
        assert f"rejected: {where}" in result.stderr

    assert bank_sql("SELECT count(*) FROM trajectories") == [(3,)]
    assert sorted(r[0] for r in bank_sql("SELECT record_location FROM trajectories")) == ["line 1", "line 3", "line 8"]
    rejects = bank_sql("SELECT line, location, source_uri, reason, raw FROM rejects ORDER BY line")
    assert [(r[0], r[1], r[2]) for r in rejects] == [(2, "line 2", "mixed.jsonl"), (4, "line 4", "mixed.jsonl"),
                                                      (5, "line 5", "mixed.jsonl"), (7, "line 7", "mixed.jsonl")]
    assert rejects[0][3].startswith("not valid JSON")
    assert rejects[1][3] == "success must be true or false, not str"
    assert rejects[2][3] == "no 'messages' in run"
    # The raw record is kept so nothing is lost.
    assert bytes(rejects[0][4]).startswith(b'{"messages": [{"role": "user", "content": "cut off')
    assert json.loads(bytes(rejects[1][4])) == {"messages": messages(90), "success": "yes"}


def test_rejects_in_json_output_and_stats(runner, tmp_path):
    _mixed_file(tmp_path)
    result = runner.invoke(app, ["ingest", "mixed.jsonl", "--json"])
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert (out["added"], out["rejected"]) == (3, 4)
    assert [r.split(":")[0] for r in out["rejects"]] == ["mixed.jsonl line 2", "mixed.jsonl line 4",
                                                        "mixed.jsonl line 5", "mixed.jsonl line 7"]
    assert error_lines(result) == [REJECTED_LINE.format(n=4)]
    stats = json.loads(runner.invoke(app, ["stats", "--json"]).stdout)
    assert stats["rejects"] == 4


def test_reingesting_a_file_with_bad_lines_does_not_duplicate_anything(runner, tmp_path, bank_sql):
    _mixed_file(tmp_path)
    runner.invoke(app, ["ingest", "mixed.jsonl"])
    result = runner.invoke(app, ["ingest", "mixed.jsonl", "--json"])
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert (out["added"], out["duplicates"], out["rejected"]) == (0, 3, 4)
    assert bank_sql("SELECT count(*) FROM rejects") == [(4,)]
    assert bank_sql("SELECT count(*) FROM trajectories") == [(3,)]


def test_bad_element_of_a_json_list_is_rejected_by_index(runner, tmp_path, bank_sql):
    write_json(tmp_path / "runs.json", [run_obj(1, True), 42, run_obj(2, False)])
    result = runner.invoke(app, ["ingest", "runs.json"])
    assert result.exit_code == 1
    assert error_lines(result) == [REJECTED_LINE.format(n=1)]
    assert bank_sql("SELECT location, line, reason FROM rejects") == [
        ("index 1", None, "expected a run object or a message list, not int")]
    assert bank_sql("SELECT count(*) FROM trajectories") == [(2,)]


def test_invalid_utf8_line_is_rejected(runner, tmp_path, bank_sql):
    good = json.dumps(run_obj(1, True)).encode()
    (tmp_path / "r.jsonl").write_bytes(good + b"\n" + b'{"messages": "\xff\xfe"}\n')
    result = runner.invoke(app, ["ingest", "r.jsonl"])
    assert result.exit_code == 1
    ((line, reason),) = bank_sql("SELECT line, reason FROM rejects")
    assert line == 2 and reason.startswith("not valid UTF-8")
    assert bank_sql("SELECT count(*) FROM trajectories") == [(1,)]


@pytest.mark.parametrize("content", ['{"hello": "world"}', "[1, 2, 3]", '{"rows": [{"a": 1}]}'])
def test_a_file_that_is_not_a_trajectory_file_gets_one_line(runner, tmp_path, bank_sql, content):
    (tmp_path / "notes.json").write_text(content, encoding="utf-8")
    result = runner.invoke(app, ["ingest", "notes.json"])
    assert result.exit_code == 1
    no_traceback(result)
    assert error_lines(result) == [NOT_TRAJECTORY.format(path="notes.json")]
    assert stderr_lines(result) == [NOT_TRAJECTORY.format(path="notes.json")]
    assert bank_sql("SELECT count(*) FROM trajectories") == [(0,)]


def test_a_non_trajectory_file_does_not_stop_the_other_files(runner, tmp_path, bank_sql):
    (tmp_path / "notes.json").write_text('{"hello": "world"}', encoding="utf-8")
    write_jsonl(tmp_path / "runs.jsonl", [run_obj(1, True), run_obj(2, True)])
    result = runner.invoke(app, ["ingest", "notes.json", "runs.jsonl"])
    assert result.exit_code == 1
    assert error_lines(result) == [NOT_TRAJECTORY.format(path="notes.json")]
    assert bank_sql("SELECT count(*) FROM trajectories") == [(2,)]


def test_a_file_that_is_not_json_at_all_says_so_in_one_line(runner, tmp_path):
    (tmp_path / "notes.json").write_text("These are my notes.\nNot JSON at all.\n", encoding="utf-8")
    result = runner.invoke(app, ["ingest", "notes.json"])
    assert result.exit_code == 1
    no_traceback(result)
    lines = error_lines(result)
    assert len(lines) == 1
    assert lines[0].startswith("Error: notes.json: not valid JSON")


def test_missing_path_gives_one_line(runner, tmp_path):
    result = runner.invoke(app, ["ingest", "nope.jsonl"])
    assert result.exit_code == 1
    no_traceback(result)
    assert stderr_lines(result) == ["Error: nope.jsonl: no such file or directory"]
    assert result.stdout == ""


def test_glob_matching_nothing_gives_one_line(runner):
    result = runner.invoke(app, ["ingest", "runs/*.jsonl"])
    assert result.exit_code == 1
    no_traceback(result)
    assert stderr_lines(result) == ["Error: runs/*.jsonl: no such file or directory"]


def test_empty_file_gives_one_line(runner, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    result = runner.invoke(app, ["ingest", "empty.jsonl"])
    assert result.exit_code == 1
    no_traceback(result)
    assert error_lines(result) == ["Error: empty.jsonl: holds no records"]


def test_unknown_format_flag(runner, tmp_path):
    write_jsonl(tmp_path / "r.jsonl", [run_obj(1, True)])
    result = runner.invoke(app, ["ingest", "r.jsonl", "--format", "langsmith"])
    assert result.exit_code == 1
    no_traceback(result)
    assert stderr_lines(result) == ["Error: unknown format 'langsmith'; known formats: " + ", ".join(registry()) + ""]


def test_malformed_playbook_flag_is_a_user_error(runner, tmp_path):
    write_jsonl(tmp_path / "r.jsonl", [run_obj(1, True)])
    result = runner.invoke(app, ["ingest", "r.jsonl", "--playbook", "default@latest"])
    assert result.exit_code == 1
    no_traceback(result)
    assert stderr_lines(result) == ["Error: --playbook: playbook reference 'default@latest' is not NAME@VERSION"]


def test_a_playbook_flag_naming_no_playbook_or_version_of_this_bank_is_a_user_error(runner, tmp_path, bank_sql):
    write_jsonl(tmp_path / "r.jsonl", [run_obj(1, True)])
    result = runner.invoke(app, ["ingest", "r.jsonl", "--playbook", "default@1"])
    assert (result.exit_code, stderr_lines(result)) == (
        1, ["Error: --playbook: no playbook 'default' in this bank (playbooks: none yet: distill first)"])
    no_traceback(result)
    assert bank_sql("SELECT count(*) FROM trajectories") == [(0,)]


def test_a_playbook_flag_naming_a_version_the_playbook_does_not_have_is_a_user_error(runner, distilled):
    write_jsonl(distilled / "r.jsonl", [run_obj(1, True)])
    for ref, error in (("default@99", "default has versions 1 to 1, not 99"), ("default@0", "default has versions 1 to 1, not 0"),
                       ("shop", "no playbook 'shop' in this bank (playbooks: default)")):
        result = runner.invoke(app, ["ingest", "r.jsonl", "--playbook", ref])
        assert (result.exit_code, stderr_lines(result)) == (1, [f"Error: --playbook: {error}"])
    assert runner.invoke(app, ["ingest", "r.jsonl", "--playbook", "default@1"]).exit_code == 0


def test_malformed_playbook_reference_in_a_record_rejects_only_that_record(runner, tmp_path, bank_sql):
    write_jsonl(tmp_path / "r.jsonl", [run_obj(1, True), run_obj(2, True, metadata={"memkit_playbook": "default@v1"}),
                                       run_obj(3, True)])
    result = runner.invoke(app, ["ingest", "r.jsonl"])
    assert result.exit_code == 1
    no_traceback(result)
    assert error_lines(result) == [REJECTED_LINE.format(n=1)]
    assert bank_sql("SELECT line FROM rejects") == [(2,)]
    assert bank_sql("SELECT count(*) FROM trajectories") == [(2,)]


def test_malformed_first_record_does_not_lose_the_good_ones(runner, tmp_path, bank_sql):
    write_jsonl(tmp_path / "r.jsonl", [{"success": True}, run_obj(1, True), run_obj(2, False)])
    result = runner.invoke(app, ["ingest", "r.jsonl"])
    assert result.exit_code == 1
    no_traceback(result)
    assert bank_sql("SELECT count(*) FROM trajectories") == [(2,)]
    assert bank_sql("SELECT line FROM rejects") == [(1,)]
    assert error_lines(result) == [REJECTED_LINE.format(n=1)]


def test_api_ingest_reports_rejects_without_raising(bank_path_api):
    result = bank_path_api
    assert (result.added, result.rejected) == (3, 4)
    assert result.reject_lines[0].startswith("mixed.jsonl line 2: not valid JSON")


@pytest.fixture
def bank_path_api(tmp_path, monkeypatch):
    import memkit

    _mixed_file(tmp_path)
    with memkit.open(tmp_path, write=True) as b:
        return b.ingest(["mixed.jsonl"])
