"""Helpers for the LLM-path tests: the scripted model (a litellm custom provider), small slices of
the tau-bench sample, and bank settings that keep retries fast."""

from __future__ import annotations

import json
import re
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, Optional

import yaml

from helpers import write_json

SCHEMA = re.compile(r"schema `(\w+)`")


def schema_of(messages: list[dict]) -> str:
    m = SCHEMA.search("\n".join(x.get("content") or "" for x in messages))
    return m.group(1) if m else ""


class BySchema:
    """A responder for the scripted model: queued replies per schema (SuccessReflection,
    FailureReflection, ContrastReflection, CuratorDecision, JudgeVerdict); the prompt-derived
    answer when a schema's queue is empty."""

    def __init__(self, **queues: list[Any]):
        self.queues: dict[str, deque] = defaultdict(deque, {k: deque(v) for k, v in queues.items()})

    def __call__(self, messages: list[dict]) -> Optional[Any]:
        q = self.queues[schema_of(messages)]
        if not q:
            return None
        reply = q.popleft()
        return reply(messages) if callable(reply) else reply


def configure(root: Path, **sections: dict) -> None:
    """Merge settings into the bank's memkit.yaml (e.g. llm={"backoff": 0.01})."""
    path = Path(root) / "memkit.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for key, value in sections.items():
        if isinstance(value, dict):
            data.setdefault(key, {})
            data[key].update(value)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


FAST = {"backoff": 0.001, "max_backoff": 0.002, "concurrency": 1, "timeout": 5}


def subset(slice_runs: list[dict], counts: dict[str, int], path: Path) -> Path:
    """The first `counts[task]` runs of each task of the slice, written as one JSON file."""
    taken: dict[str, int] = defaultdict(int)
    out = []
    for run in slice_runs:
        task = str(run["task_id"])
        if task in counts and taken[task] < counts[task]:
            taken[task] += 1
            out.append(run)
    return write_json(path, out)


def lesson(section: str, text: str, when: str, tags: Optional[list[str]] = None) -> dict:
    return {"section": section, "text": text, "when_to_use": when, "tags": tags or []}


def failure_reply(*lessons: dict, item_tags: Optional[list[dict]] = None) -> str:
    return json.dumps({"where_it_went_wrong": "it booked with a wrong total", "root_cause": "no arithmetic check",
                       "what_would_have_been_right": "compute the total first", "lessons": list(lessons),
                       "item_tags": item_tags or []})


def success_reply(*lessons: dict, item_tags: Optional[list[dict]] = None) -> str:
    return json.dumps({"what_worked": "it checked the records first", "lessons": list(lessons),
                       "item_tags": item_tags or []})


def related_items(prompt: list[dict]) -> list[dict]:
    text = prompt[-1]["content"]
    m = re.search(r"^Related playbook items[^\n]*\n(\[.*\])$", text, re.M)
    return json.loads(m.group(1)) if m else []


def candidates(prompt: list[dict]) -> list[dict]:
    text = prompt[-1]["content"]
    m = re.search(r"^Candidate lessons[^\n]*\n(\[.*\])$", text, re.M)
    return json.loads(m.group(1)) if m else []


def duplicate_pairs(prompt: list[dict]) -> list[dict]:
    text = prompt[-1]["content"]
    m = re.search(r"^Possible duplicate items[^\n]*\n(\[.*\])$", text, re.M)
    return json.loads(m.group(1)) if m else []


import pytest  # noqa: E402


@pytest.fixture
def scripted():
    """The scripted model, registered with litellm, with an empty queue; the prompts it gets are in .prompts."""
    from memkit.distill import scripted as module
    from memkit.distill.llm import litellm_module

    litellm_module()
    model = module.model()
    model.reset()
    yield model
    model.reset()
