"""The guard's independence rule by source: one file can claim any task ids."""

import json
import re
import shutil

from memkit.cli.main import app
from helpers import SLICE, playbook_items



def test_independence_by_source_counts_files_not_the_task_ids_they_claim(runner, distilled):
    """One file can claim any task ids; `scoring.independent_by: source` asks for different files."""
    active = [i for i, v in playbook_items(distilled).items() if v["status"] == "active"]
    assert active  # by task (the default), the slice's tasks support its lessons
    cfg = distilled / "memkit.yaml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("independent_by: task", "independent_by: source"),
                   encoding="utf-8")
    result = runner.invoke(app, ["distill"])
    assert result.exit_code == 0, result.output
    items = playbook_items(distilled)
    assert [i for i in active if items[i]["status"] == "quarantined"] == active  # the slice is one file
    assert all(re.fullmatch(r"guard: needs independent support: \d+ run\(s\) from 1 source\(s\), 2 needed",
                            items[i]["status_reason"]) for i in active)
    # A second file whose runs say the same restores what both support.
    shutil.copy(SLICE, distilled / "copy.json")
    runs = json.loads((distilled / "copy.json").read_text(encoding="utf-8"))
    for r in runs:  # the same runs from another source: a new file of new runs (else they are duplicates)
        r["trial"] = r.get("trial", 0) + 100
        r["traj"][1]["content"] += " (again)"
    (distilled / "copy.json").write_text(json.dumps(runs), encoding="utf-8")
    assert runner.invoke(app, ["ingest", "copy.json"]).exit_code == 0
    assert runner.invoke(app, ["distill"]).exit_code == 0
    items = playbook_items(distilled)
    assert [i for i in active if items[i]["status"] == "active"] == active
