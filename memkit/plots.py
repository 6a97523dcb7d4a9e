"""Matplotlib views of a bank's frames. matplotlib is imported inside each function (an optional extra).

Each function takes frames from `bank.runs()`, `bank.tool_calls()`, `bank.playbook(name).items()` or
`.budget_fill()`, draws on `ax` (a new figure when None) and returns the axes.
"""

from __future__ import annotations

from typing import Optional

import polars as pl

from memkit.display import OUTCOME_COLOUR


def _axes(ax, size):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=size, layout="constrained")
    return ax


def _order_outcomes(names) -> list[str]:
    known = [o for o in ("success", "partial", "failure", "unknown") if o in names]
    return known + sorted(set(names) - set(known))


def outcomes_by_task(runs: pl.DataFrame, ax=None):
    """Stacked bars of runs per task by outcome, tasks sorted by success rate then id."""
    counts = (runs.group_by("task_id", "outcome").len()
              .pivot(on="outcome", index="task_id", values="len").fill_null(0))
    outcomes = _order_outcomes([c for c in counts.columns if c != "task_id"])
    total = pl.sum_horizontal(outcomes)
    success = pl.col("success") if "success" in outcomes else pl.lit(0)
    counts = counts.with_columns(rate=success / total, key=pl.col("task_id").cast(pl.Int64, strict=False))
    counts = counts.sort(["rate", "key", "task_id"], descending=[True, False, False], nulls_last=True)
    ax = _axes(ax, (12, 3.2))
    x = list(range(len(counts)))
    bottom = [0] * len(counts)
    for outcome in outcomes:
        values = counts[outcome].to_list()
        ax.bar(x, values, bottom=bottom, color=OUTCOME_COLOUR.get(outcome, "#757575"), label=outcome, width=0.85)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xticks(x, counts["task_id"].to_list(), fontsize=7, rotation=90)
    ax.set_xlim(-0.6, len(counts) - 0.4)
    ax.set_xlabel("task (sorted by success rate)")
    ax.set_ylabel("runs")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title("Outcomes by task")
    return ax


def tool_errors(tool_calls: pl.DataFrame, top: int = 10, ax=None, width: int = 70):
    """The most common failure signatures (tool + masked error): runs that hit each, split by outcome."""
    hits = (tool_calls.filter(pl.col("is_error"))
            .unique(["run_id", "name", "error_signature"])
            .group_by("name", "error_signature", "outcome").len())
    ranked = hits.group_by("name", "error_signature").agg(pl.col("len").sum().alias("runs")).sort(
        ["runs", "name", "error_signature"], descending=[True, False, False]).head(top)
    ax = _axes(ax, (10, 0.4 * max(len(ranked), 3) + 1))
    labels = [f"{n}: {s if len(s) <= width else s[:width - 1] + '…'}" for n, s in ranked.select("name", "error_signature").iter_rows()]
    y = list(range(len(ranked)))[::-1]
    left = [0] * len(ranked)
    for outcome in _order_outcomes(hits["outcome"].unique().to_list()):
        values = ranked.join(hits.filter(pl.col("outcome") == outcome), on=["name", "error_signature"], how="left",
                             maintain_order="left")["len"].fill_null(0).to_list()
        ax.barh(y, values, left=left, color=OUTCOME_COLOUR.get(outcome, "#757575"), label=f"run {outcome}")
        left = [a + b for a, b in zip(left, values)]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("runs that hit the error")
    ax.legend(loc="lower right", frameon=False)
    ax.set_title(f"Top {len(ranked)} failure signatures")
    return ax


def failure_signatures_over_time(tool_calls: pl.DataFrame, runs: pl.DataFrame, top: int = 8, bins: int = 8,
                                 ax=None, width: int = 70):
    """A heat map of runs hitting each of the `top` signatures per bin of runs, in the runs frame's order
    (ingest order; sort it by started_at first if you have times): which failures persist as runs arrive."""
    order = runs.select("run_id").with_row_index("i").with_columns(
        bin=(pl.col("i") * bins // max(len(runs), 1)).cast(pl.Int32))
    hits = (tool_calls.filter(pl.col("is_error")).unique(["run_id", "name", "error_signature"])
            .join(order, on="run_id").with_columns(sig=pl.col("name") + ": " + pl.col("error_signature")))
    leaders = hits.group_by("sig").len().sort(["len", "sig"], descending=[True, False]).head(top)["sig"].to_list()
    per_bin = order.group_by("bin").agg(start=pl.col("i").min() + 1, end=pl.col("i").max() + 1).sort("bin")
    grid = [per_bin.join(hits.filter(pl.col("sig") == sig).group_by("bin").len(), on="bin", how="left")["len"]
            .fill_null(0).to_list() for sig in leaders]
    ax = _axes(ax, (11, 0.45 * max(len(leaders), 2) + 1.4))
    if grid:
        ax.imshow(grid, aspect="auto", cmap="Reds", vmin=0)
        peak = max(max(row) for row in grid) or 1
        for r, row in enumerate(grid):
            for c, n in enumerate(row):
                ax.text(c, r, str(n), ha="center", va="center", fontsize=8,
                        color="white" if n > peak / 2 else "black")
    ax.set_xticks(range(len(per_bin)), [f"{s}–{e}" for s, e in per_bin.select("start", "end").iter_rows()], fontsize=8)
    ax.set_yticks(range(len(leaders)), [s if len(s) <= width else s[:width - 1] + "…" for s in leaders], fontsize=8)
    ax.set_xlabel("runs, in order")
    ax.set_title("Runs hitting each failure signature, over time")
    return ax


def tool_use_by_outcome(tool_calls: pl.DataFrame, runs: pl.DataFrame, ax=None):
    """Share of successful vs failed runs that called each tool at least once."""
    per_outcome = runs.group_by("outcome").len().rename({"len": "n"})
    used = (tool_calls.unique(["run_id", "name"]).group_by("name", "outcome").len()
            .join(per_outcome, on="outcome").with_columns(share=pl.col("len") / pl.col("n")))
    wide = used.pivot(on="outcome", index="name", values="share").fill_null(0.0)
    for outcome in ("success", "failure"):
        if outcome not in wide.columns:
            wide = wide.with_columns(pl.lit(0.0).alias(outcome))
    wide = wide.with_columns(gap=pl.col("success") - pl.col("failure")).sort(["gap", "name"])
    ax = _axes(ax, (8, 0.3 * len(wide) + 1.2))
    y = list(range(len(wide)))
    ax.barh([v + 0.2 for v in y], wide["success"].to_list(), height=0.4, color=OUTCOME_COLOUR["success"], label="successful runs")
    ax.barh([v - 0.2 for v in y], wide["failure"].to_list(), height=0.4, color=OUTCOME_COLOUR["failure"], label="failed runs")
    ax.set_yticks(y, wide["name"].to_list(), fontsize=8)
    ax.set_xlabel("share of runs that called the tool")
    ax.legend(frameon=False, loc="lower right")
    ax.set_title("Tool use, successful vs failed runs")
    return ax


def item_utility(items: pl.DataFrame, ax=None):
    """Each exposed item's advantage over its task families' base rate, with its confidence interval."""
    exposed = items.filter(pl.col("exposures") > 0, pl.col("advantage").is_not_null()).sort(["advantage", "id"])
    ax = _axes(ax, (8, 0.3 * max(len(exposed), 3) + 1.2))
    y = list(range(len(exposed)))
    adv = exposed["advantage"].to_list()
    ax.errorbar(adv, y, xerr=[[a - b for a, b in zip(adv, exposed["lower"].to_list())],
                              [b - a for a, b in zip(adv, exposed["upper"].to_list())]],
                fmt="o", color="#1e88e5", ecolor="#90caf9", capsize=3)
    ax.axvline(0, color="black", linewidth=1, linestyle="--")
    ax.set_yticks(y, [f"{i} ({n})" for i, n in exposed.select("id", "exposures").iter_rows()], fontsize=8)
    ax.set_xlim(-1, 1)
    ax.set_xlabel("advantage over the task families' base rate, with confidence interval")
    unexposed = len(items) - len(exposed)
    ax.set_title("Item utility" + (f" ({unexposed} items without exposures not shown)" if unexposed else ""))
    return ax


def budget_fill(fill: pl.DataFrame, axes: Optional[tuple] = None):
    """Across versions: export size against each budget (left) and how many active items each budget keeps (right)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.4), layout="constrained")
    left, right = axes
    versions = fill.select("version", "n_active", "full_tokens").unique().sort("version")
    style = dict(color="black", linestyle="--", linewidth=2, zorder=3)
    left.plot(versions["version"].to_list(), versions["full_tokens"].to_list(), label="all active items", **style)
    right.plot(versions["version"].to_list(), versions["n_active"].to_list(), label="active items", **style)
    for budget in sorted(fill["budget"].unique().to_list()):
        part = fill.filter(pl.col("budget") == budget).sort("version")
        line = left.plot(part["version"].to_list(), part["tokens"].to_list(), marker="o", label=f"budget {budget}")[0]
        left.axhline(budget, color=line.get_color(), linewidth=0.8, linestyle=":")
        right.plot(part["version"].to_list(), part["n_included"].to_list(), marker="o", color=line.get_color(),
                   label=f"fit in {budget}")
    for ax in axes:
        ax.set_xlabel("playbook version")
        ax.set_xticks(versions["version"].to_list())
        ax.set_ylim(bottom=0)
        ax.legend(frameon=False, fontsize=8)
    left.set_ylabel("tokens exported")
    left.set_title("Export size vs budget")
    right.set_ylabel("items")
    right.set_title("Items kept by each budget")
    return axes
