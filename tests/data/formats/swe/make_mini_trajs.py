"""Regenerate the mini-swe-agent fixtures in this folder (not run by the tests; needs
`pip install mini-swe-agent`, which this was made with at 2.4.6).

    python tests/data/formats/swe/make_mini_trajs.py

Runs mini-swe-agent's own DefaultAgent in its LocalEnvironment (real shell commands in a temporary
folder) against its deterministic test models, once with text actions (`DeterministicModel`) and
once with tool calls (`DeterministicToolcallModel`), and saves each trajectory the way its
SWE-bench runner does (with `instance_id` on top).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from minisweagent.agents.default import DefaultAgent
from minisweagent.environments.local import LocalEnvironment
from minisweagent.models.test_models import (
    DeterministicModel, DeterministicToolcallModel, make_output, make_toolcall_output,
)

HERE = Path(__file__).resolve().parent
SYSTEM = "You are a helpful assistant that can interact with a computer shell."
INSTANCE = ("Please solve this issue: {{task}}\n\nWhen done, run "
            "`echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT` followed by your final output.")
TASK = "Create greeting.txt containing the word hello."
SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && cat greeting.txt"
COMMANDS = [
    ("Let me see what is in the folder.", "ls"),
    ("Maybe the file already exists.", "cat greeting.txt"),
    ("It does not; I will create it.", "echo hello > greeting.txt"),
    ("Done; submitting.", SUBMIT),
]


def text_outputs() -> list[dict]:
    return [make_output(f"THOUGHT: {thought}\n\n```mswea_bash_command\n{cmd}\n```", [{"command": cmd}], cost=0.01)
            for thought, cmd in COMMANDS]


def toolcall_outputs() -> list[dict]:
    outs = []
    for i, (thought, cmd) in enumerate(COMMANDS):
        call_id = f"call_{i}"
        call = {"id": call_id, "type": "function", "function": {"name": "bash", "arguments": json.dumps({"command": cmd})}}
        out = make_toolcall_output(thought, [call], [{"command": cmd, "tool_call_id": call_id}])
        out["extra"]["cost"] = 0.01
        outs.append(out)
    return outs


def run(model, name: str, instance_id: str) -> None:
    with tempfile.TemporaryDirectory(prefix="mini-") as cwd:
        env = LocalEnvironment(cwd=cwd, timeout=10)
        agent = DefaultAgent(model, env, system_template=SYSTEM, instance_template=INSTANCE, step_limit=10)
        info = agent.run(TASK)
        path = HERE / name
        # As minisweagent.run.benchmarks.swebench.process_instance saves it.
        agent.save(path, {"info": {"exit_status": info.get("exit_status"), "submission": info.get("submission")},
                          "instance_id": instance_id})
        text = path.read_text().replace(cwd, "/tmp/mini-work")  # the temporary folder's random name
        path.write_text(text)
        print("wrote", path, info.get("exit_status"))


if __name__ == "__main__":
    run(DeterministicModel(outputs=text_outputs(), model_name="deterministic"), "mini-text.traj.json", "demo__greeting-1")
    run(DeterministicToolcallModel(outputs=toolcall_outputs(), model_name="deterministic_toolcall"),
        "mini-toolcall.traj.json", "demo__greeting-2")
