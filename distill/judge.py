"""An LLM judge for runs whose outcome is unknown (ReasoningBank's success/failure judge).

Its verdict goes into `scores` (scorer "judge", key "outcome", source "judge"); the run's own
outcome column keeps what the data said. The LLM reflector reflects on judged runs with the
verdict as their outcome."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from memkit.distill import transcript
from memkit.distill.llm import BudgetExceeded, InvalidReply, LLMCallFailed, LLMClient, render_messages

SCORER, KEY = "judge", "outcome"


class JudgeVerdict(BaseModel):
    model_config = ConfigDict(extra="ignore")
    outcome: Literal["success", "failure"]
    confidence: float = Field(ge=0.0, le=1.0)
    explanation: str


def verdicts(con, run_ids) -> dict[str, str]:
    """Judged outcomes already stored for these runs."""
    ids = list(run_ids)
    if not ids:
        return {}
    rows = con.execute(f"SELECT trajectory_id, value_str FROM scores WHERE scorer = ? AND key = ? AND source = 'judge'"
                       f" AND trajectory_id IN ({', '.join('?' * len(ids))})", [SCORER, KEY, *ids]).fetchall()
    return {r: v for r, v in rows if v in ("success", "failure")}


def judge_unknown(con, client: LLMClient, env, run_ids, max_run_tokens: int, *, dry_run: bool = False,
                  concurrency: int = 1) -> tuple[dict[str, str], list[str]]:
    """Label the runs among `run_ids` whose outcome is unknown; return (run -> verdict, failures).
    Verdicts stored earlier are reused, not asked again."""
    unknown = [r for r, in con.execute(
        f"SELECT id FROM trajectories WHERE outcome = 'unknown' AND id IN ({', '.join('?' * len(run_ids))}) ORDER BY id",
        list(run_ids)).fetchall()] if run_ids else []
    known = verdicts(con, unknown)
    todo = [r for r in unknown if r not in known]
    runs = transcript.load(con, todo)
    failures: list[str] = []
    replies: dict[str, JudgeVerdict] = {}

    def one(rid: str) -> None:
        run = runs[rid]
        view = {"task": " ".join((run.task_text or "(no task text)").split())[:1500],
                "transcript": transcript.render(run, max_run_tokens)}
        try:
            replies[rid] = client.complete_json(render_messages(env, "judge.j2", run=view), JudgeVerdict,
                                                purpose="judge").value
        except (InvalidReply, LLMCallFailed, BudgetExceeded) as e:
            failures.append(f"judge {rid[:10]}: {e}")

    if concurrency > 1 and len(todo) > 1:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="memkit-judge") as pool:
            list(pool.map(one, [r for r in todo if r in runs]))
    else:
        for rid in todo:
            if rid in runs:
                one(rid)
    if not dry_run:
        for rid in sorted(replies):
            v = replies[rid]
            con.execute("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, 'judge')",
                        [rid, SCORER, KEY, 1.0 if v.outcome == "success" else 0.0, v.outcome,
                         f"{client.s.model} (confidence {v.confidence:.2f}): {v.explanation}"])
    known.update({r: v.outcome for r, v in replies.items()})
    return known, failures
