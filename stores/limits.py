"""Resource limits: what one record or one run may cost the bank (memkit.yaml `ingest:`).

    max_record_bytes  A record (a JSON Lines line, an element of a JSON array, a whole JSON file,
                      an entry of an archive) bigger than this is rejected: a row in `rejects` with
                      the file, line or index, the reason, and the record's first 64 KB (redacted).
                      JSON Lines and JSON arrays are read in bounded memory: the rest of an
                      oversized record is skipped without being held. The records around it are
                      read as usual. (Nesting deeper than the stored JSON allows is a reject too:
                      see stores/records.py and stores/formats/fields.check_nesting.)
    max_messages      A run with more messages is kept, cut to its first and last max_messages/2
                      messages with a marker step (role system, name memkit) between them. Head and
                      tail, not head only: the start holds the task and the plan, the end holds how
                      the run ended (the final answer, the error it never recovered from), which is
                      what the outcome, and so every lesson mined from the run, is about. What goes
                      is the middle, in long runs mostly the same actions repeated. Kept steps keep
                      their index in the original run as `seq`; the marker takes the first left-out
                      index; `n_steps` stays the original count.
    max_run_bytes     A run whose text (message text, reasoning, tool-call arguments and tool
                      results) is bigger than this has its longest texts cut to a common length
                      (so short texts are never touched): start and end kept, the middle replaced
                      by "…[truncated N bytes]…". Its raw JSON is then bigger than the limit too and
                      is not stored (`raw` is NULL): the source file (`sources.sha256`) keeps it, at
                      `record_location`.

Every cut is a row of the `truncations` table, written with its run. Limits are 0 or None for
"no limit". A run's id hashes the run as read, before any cut, so re-ingesting an oversized file
adds nothing (and a changed limit applies to new runs only: purge a run to store it again).

Cost on normal runs: two comparisons (message count and the record's byte size, which bounds
its text from above); texts are measured only for runs over the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import orjson

from memkit.model import Run, Step

MARKER = "…[truncated {n} bytes]…"
MESSAGES_MARKER = "…[truncated {n} messages]…"


def human_size(n: int) -> str:
    """1234567 -> '1.2 MB' (decimal units, as in memkit.yaml)."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def too_big(size: int, limit: int, *, at_least: bool = False) -> str:
    """The reject reason for a record over max_record_bytes."""
    return (f"record is {'more than ' if at_least else ''}{human_size(size)}, over ingest.max_record_bytes "
            f"({human_size(limit)})")


@dataclass(slots=True)
class Cut:
    """What `Limits.apply` did to one run: rows for `truncations` (seq, what, limit, original, kept),
    the stored steps' indexes in the original run (None: 0..n-1), and whether the raw JSON is kept."""

    rows: list[tuple] = field(default_factory=list)
    seqs: Optional[list[int]] = None
    n_steps: int = 0
    keep_raw: bool = True


@dataclass(frozen=True, slots=True)
class Limits:
    max_record_bytes: Optional[int] = None
    max_messages: Optional[int] = None
    max_run_bytes: Optional[int] = None

    @classmethod
    def from_config(cls, c=None) -> "Limits":
        """From an IngestConfig (memkit.yaml `ingest:`); None: the defaults."""
        if c is None:
            from memkit.config import IngestConfig

            c = IngestConfig()
        return cls(int(c.max_record_bytes or 0) or None, int(c.max_messages or 0) or None,
                   int(c.max_run_bytes or 0) or None)

    def exceeded(self, run: Run, size: int) -> bool:
        """Whether `run` (read from a record of `size` bytes) is over max_messages or max_run_bytes."""
        return bool((self.max_messages and len(run.steps) > self.max_messages)
                    or (self.max_run_bytes and size > self.max_run_bytes))

    def apply(self, run: Run, size: int) -> Cut:
        """Cut `run` in place to the limits; `size` is its record's size in bytes."""
        cut = Cut(n_steps=len(run.steps))
        m = self.max_messages
        if m and len(run.steps) > m:
            n = len(run.steps)
            head, tail = (m + 1) // 2, m // 2
            left_out = n - head - tail
            marker = Step(role="system", name="memkit", text=MESSAGES_MARKER.format(n=left_out))
            run.steps = run.steps[:head] + [marker] + (run.steps[n - tail:] if tail else [])
            cut.seqs = list(range(head + 1)) + list(range(n - tail, n))
            cut.rows.append((None, "messages", "max_messages", n, head + tail))
        b = self.max_run_bytes
        if b and size > b:
            cut.rows += _bound_text(run, b, cut.seqs)
            cut.keep_raw = False
            cut.rows.append((None, "raw", "max_run_bytes", size, 0))
        return cut


def _nbytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _cap(sizes: list[int], budget: int) -> int:
    """The largest c such that sum(min(s, c) for s in sizes) <= budget (cut only the longest texts)."""
    sizes = sorted(sizes, reverse=True)
    rest = sum(sizes)
    for k, s in enumerate(sizes):
        rest -= s  # the sizes after the k+1 longest, which are cut to c
        c = (budget - rest) // (k + 1)
        if c >= (sizes[k + 1] if k + 1 < len(sizes) else 0):
            return max(c, 0)
    return 0


def shorten(text: str, size: int, cap: int) -> tuple[str, int]:
    """`text` (`size` bytes) cut to about `cap` bytes: its start and end around a marker; and the bytes kept."""
    keep = max(cap - len(MARKER.format(n=size).encode()), 0)
    head, tail = keep - keep // 2, keep // 2
    if text.isascii():
        return text[:head] + MARKER.format(n=size - keep) + (text[size - tail:] if tail else ""), keep
    data = text.encode("utf-8")
    start = data[:head].decode("utf-8", "ignore")
    end = data[size - tail:].decode("utf-8", "ignore") if tail else ""
    kept = len(start.encode()) + len(end.encode())
    return start + MARKER.format(n=size - kept) + end, kept


def _bound_text(run: Run, budget: int, seqs: Optional[list[int]]) -> list[tuple]:
    """Cut the run's longest texts so that all of them together fit `budget` bytes."""
    fields = []  # (size, step index, kind, call index or None)
    for i, s in enumerate(run.steps):
        if s.text:
            fields.append((_nbytes(s.text), i, "tool_result" if s.role == "tool" else "text", None))
        if s.reasoning:
            fields.append((_nbytes(s.reasoning), i, "reasoning", None))
        for j, c in enumerate(s.tool_calls):
            if c.arguments is not None:
                fields.append((len(orjson.dumps(c.arguments)), i, "arguments", j))
            elif c.arguments_raw:
                fields.append((_nbytes(c.arguments_raw), i, "arguments", j))
    if sum(f[0] for f in fields) <= budget:
        return []
    cap = _cap([f[0] for f in fields], budget)
    rows = []
    for size, i, kind, j in fields:
        if size <= cap:
            continue
        step = run.steps[i]
        if kind == "arguments":
            call = step.tool_calls[j]
            text = orjson.dumps(call.arguments).decode() if call.arguments is not None else call.arguments_raw
            call.arguments, (call.arguments_raw, kept) = None, shorten(text, size, cap)
        elif kind == "reasoning":
            step.reasoning, kept = shorten(step.reasoning, size, cap)
        else:
            step.text, kept = shorten(step.text, size, cap)
        rows.append((seqs[i] if seqs else i, kind, "max_run_bytes", size, kept))
    return rows
