"""A scripted agent for `memkit eval` tests: it succeeds on a task exactly when its context file holds
the lesson the task needs (and none the task is hurt by). Writes one openai-chat run as JSON."""

import argparse
import json
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--task", required=True)
parser.add_argument("--context", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--trial", default="0")
args = parser.parse_args()

task = json.loads(Path(args.task).read_text())
context = Path(args.context).read_text()
ok = task["needs"] in context and not (task.get("hurt_by") and task["hurt_by"] in context)
run = {
    "task_id": task["id"],
    "success": ok,
    "messages": [
        {"role": "system", "content": context[:200]},
        {"role": "user", "content": f"{task['prompt']} (trial {args.trial})"},
        {"role": "assistant", "content": "Done." if ok else "I could not do it."},
    ],
}
Path(args.out).write_text(json.dumps(run))
