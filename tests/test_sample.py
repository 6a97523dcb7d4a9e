"""The whole loop on the bundled sample (200 tau-bench airline runs), and the demo command."""

import json
from pathlib import Path

import pytest

import memkit
from memkit.cli.main import app
from helpers import FULL_SAMPLE, SLICE, first_int, load_yaml, squash

pytestmark = pytest.mark.skipif(not FULL_SAMPLE.exists(), reason="bundled sample not present")


def _runs_with_error(runs, tool, needle) -> set[str]:
    return {f"task-{r['task_id']}-trial-{r['trial']}" for r in runs for m in r["traj"]
            if m["role"] == "tool" and m.get("name") == tool and (m.get("content") or "").startswith("Error")
            and needle in m["content"]}


def test_full_sample_ingest_and_distill(runner, tmp_path):
    runner.invoke(app, ["init"])
    result = runner.invoke(app, ["ingest", str(FULL_SAMPLE)])
    assert result.exit_code == 0, result.output
    assert squash(result.stdout) == ("Ingested 1 file(s), 200 records: 200 runs added (116 failure, 84 success), "
                                     "0 skipped as duplicates, 0 rejected.")
    result = runner.invoke(app, ["distill", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["version"] == 1

    runs = json.loads(FULL_SAMPLE.read_text())
    with memkit.open(tmp_path) as b:
        ext = dict(b.con.execute("SELECT id, external_id FROM trajectories").fetchall())
    pitfalls = [i for i in load_yaml(tmp_path / "playbooks" / "default.yaml")["items"] if i["section"] == "pitfalls"]
    for tool, needle in (("book_reservation", "payment amount does not add up"),
                         ("update_reservation_flights", "not available on date")):
        expected = _runs_with_error(runs, tool, needle)
        assert len(expected) >= 5
        found = [i for i in pitfalls if f"tool:{tool}" in i["tags"] and needle in i["text"].lower()]
        assert len(found) == 1, [i["text"] for i in pitfalls]
        item = found[0]
        assert {ext[r] for r in item["provenance"]["evidence"]} == expected
        assert first_int(item["provenance"]["support"]) == len(expected)
        assert f"{len(expected)} " in item["text"]


def test_demo_on_the_slice(runner, tmp_path):
    result = runner.invoke(app, ["demo", "demo", "--sample", str(SLICE)])
    assert result.exit_code == 0, result.output
    assert "Outputs:" in result.stdout
    root = tmp_path / "demo"
    # The demo says where its context files are; they exist and cite item ids.
    files = [Path(line.split("context file:", 1)[1].strip()) for line in result.stdout.splitlines()
             if "context file:" in line]
    assert len(files) >= 2
    for path in files:
        text = (path if path.is_absolute() else tmp_path / path).read_text()
        assert "[pit-00001]" in text and "cite its id" in text
    data = load_yaml(root / "playbooks" / "airline.yaml")
    assert data["version"] == 2
    assert all("domain:airline" in i["tags"] for i in data["items"])
    with memkit.open(root) as b:
        assert b.stats()["runs"] == 34
        assert [v["version"] for v in b.versions("airline")] == [1, 2]
