"""Issue 5, point 4: `memkit eval` runs an agent over tasks with two context files and compares the arms."""

import json
import sys
from pathlib import Path

from memkit.cli.main import app
from helpers import playbook_items, stderr_lines

AGENT = Path(__file__).with_name("scripted_agent.py")


def _setup(root: Path, needs: str, n_tasks: int = 6) -> Path:
    tasks = root / "tasks"
    tasks.mkdir()
    for i in range(n_tasks):
        (tasks / f"t{i}.json").write_text(json.dumps({"id": f"t{i}", "needs": needs, "prompt": f"task {i}"}))
    cfg = root / "eval.yaml"
    cfg.write_text(f"agent: {sys.executable} {AGENT} --task {{task_file}} --context {{context_file}} --out {{run_file}}\n"
                   "tasks: tasks/*.json\nparallel: 2\n")
    return cfg


def test_a_version_that_drops_a_helpful_item_is_shown_worse(runner, distilled, bank_sql):
    items = playbook_items(distilled)
    helpful = next(iter(items))
    cfg = _setup(distilled, f"[{helpful}]")
    assert runner.invoke(app, ["playbook", "retire", "default", helpful, "-r", "try without"]).exit_code == 0
    result = runner.invoke(app, ["eval", "default", "--config", str(cfg), "--baseline", "1", "--candidate", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    v1, v2 = report["arms"]
    assert (v1["arm"], v1["successes"], v1["runs"]) == ("v1", 6, 6)
    assert (v2["arm"], v2["successes"], v2["runs"]) == ("v2", 0, 6)
    assert report["verdict"]["worse"] is True and report["verdict"]["upper"] < 0
    assert report["only_in"] == {"v1": [helpful], "v2": []}
    # The runs were ingested with the arm's playbook version: they are exposures for scoring.
    assert bank_sql("SELECT playbook_version, count(*) FROM trajectories WHERE playbook = 'default' GROUP BY 1 ORDER BY 1") == [(1, 6), (2, 6)]

    # Resumable: a second eval runs nothing new and ingests nothing new.
    again = json.loads(runner.invoke(app, ["eval", "default", "-c", str(cfg), "--baseline", "1", "--candidate", "2", "--json"]).stdout)
    assert [a["runs"] for a in again["arms"]] == [6, 6]
    assert bank_sql("SELECT count(*) FROM trajectories WHERE playbook = 'default'") == [(12,)]


def test_a_playbook_against_no_context_is_not_worse(runner, distilled):
    helpful = next(iter(playbook_items(distilled)))
    cfg = _setup(distilled, f"[{helpful}]", n_tasks=4)
    result = runner.invoke(app, ["eval", "default", "-c", str(cfg), "--baseline", "none", "--candidate", "latest"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["none:", "0/4", "succeeded,", "0.00", "[0.00,", "0.49]"]
    assert lines[1].split()[:3] == ["v1:", "4/4", "succeeded,"]
    assert lines[2].startswith("v1 succeeded 4/4 vs none 0/4: difference +1.00") and lines[2].endswith("not shown worse")


def test_eval_config_errors_are_one_line(runner, distilled):
    (distilled / "bad.yaml").write_text("agent: x\n")
    result = runner.invoke(app, ["eval", "default", "-c", "bad.yaml"])
    assert result.exit_code == 1 and stderr_lines(result) == ["Error: bad.yaml: tasks: Field required"]
    cfg = _setup(distilled, "x")
    result = runner.invoke(app, ["eval", "default", "-c", str(cfg), "--baseline", "v9"])
    assert stderr_lines(result) == ["Error: arm 'v9' is not none, latest, stable or a version of 'default' (1..1)"]
