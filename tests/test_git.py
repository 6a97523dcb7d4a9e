"""Point 7: when the playbooks folder is in a git repository, every new version is committed."""

import json
import subprocess

import memkit
from memkit.cli.main import app
from helpers import squash


def git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_two_distills_make_two_commits(runner, tmp_path, halves, bank_sql):
    git(tmp_path, "init", "-q")
    runner.invoke(app, ["init"])
    for part in halves:
        assert runner.invoke(app, ["ingest", str(part)]).exit_code == 0
        result = runner.invoke(app, ["distill"])
        assert result.exit_code == 0, result.output
        assert ", git commit " in squash(result.stdout)

    subjects = git(tmp_path, "log", "--format=%s").splitlines()
    assert len(subjects) == 2
    assert all(s.startswith("memkit:") for s in subjects)
    assert subjects[0].startswith("memkit: default v2: ") and subjects[1].startswith("memkit: default v1: ")
    # The subject summarises the operations, the body lists them.
    ops_v2 = json.loads(bank_sql("SELECT operations FROM playbook_versions WHERE version = 2")[0][0])
    body = git(tmp_path, "log", "-1", "--format=%b")
    for op in ops_v2:
        assert f"- {op['op']} {op['item_id']}" in body
    # Only the playbook file is committed, and it is committed as written.
    assert git(tmp_path, "show", "--name-only", "--format=", "HEAD").split() == ["playbooks/default.yaml"]
    assert git(tmp_path, "status", "--porcelain", "--", "playbooks").strip() == ""
    assert git(tmp_path, "show", "HEAD:playbooks/default.yaml") == (tmp_path / "playbooks" / "default.yaml").read_text()
    # The bank remembers each version's commit.
    commits = [r[0] for r in bank_sql("SELECT git_commit FROM playbook_versions ORDER BY version")]
    assert commits == git(tmp_path, "log", "--format=%H").split()[::-1]
    with memkit.open(tmp_path) as b:
        assert [v["git_commit"] for v in b.versions("default")] == commits


def test_no_change_makes_no_commit(runner, tmp_path, slice_path):
    git(tmp_path, "init", "-q")
    runner.invoke(app, ["init"])
    runner.invoke(app, ["ingest", str(slice_path)])
    runner.invoke(app, ["distill"])
    runner.invoke(app, ["distill"])
    assert len(git(tmp_path, "log", "--format=%H").split()) == 1


def test_commit_uses_the_configured_identity(runner, tmp_path, slice_path):
    git(tmp_path, "init", "-q")
    runner.invoke(app, ["init"])
    runner.invoke(app, ["ingest", str(slice_path)])
    runner.invoke(app, ["distill"])
    assert git(tmp_path, "log", "-1", "--format=%an <%ae>").strip() == "memkit tests <tests@memkit.invalid>"


def test_outside_a_git_repository_nothing_is_committed(tmp_path, slice_path):
    with memkit.init(tmp_path) as b:
        b.ingest([slice_path])
        result = b.distill()
        assert result.version == 1 and result.git_commit is None
        assert b.versions("default")[0]["git_commit"] is None
    assert not (tmp_path / ".git").exists()


def test_git_commit_false_in_config_disables_commits(runner, tmp_path, slice_path):
    git(tmp_path, "init", "-q")
    runner.invoke(app, ["init"])
    cfg = tmp_path / "memkit.yaml"
    cfg.write_text(cfg.read_text().replace("git_commit: true", "git_commit: false"))
    runner.invoke(app, ["ingest", str(slice_path)])
    out = json.loads(runner.invoke(app, ["distill", "--json"]).stdout)
    assert out["version"] == 1 and out["git_commit"] is None
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True).returncode != 0


def test_ignored_playbook_is_not_committed(runner, tmp_path, slice_path):
    git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("playbooks/\n")
    runner.invoke(app, ["init"])
    runner.invoke(app, ["ingest", str(slice_path)])
    out = json.loads(runner.invoke(app, ["distill", "--json"]).stdout)
    assert out["version"] == 1 and out["git_commit"] is None
