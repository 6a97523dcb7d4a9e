"""Notebook views over a bank: one run (`bank.run(id)`) and one playbook (`bank.playbook(name)`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional

import polars as pl

from memkit import frames
from memkit.display import plural
from memkit.errors import PlaybookNotFound

if TYPE_CHECKING:
    from memkit.bank import Bank
    from memkit.model import Playbook

_S, _I32, _F, _B, _T = pl.String, pl.Int32, pl.Float64, pl.Boolean, pl.Datetime("us")

SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "items": {
        "id": _S, "section": _S, "status": _S, "text": _S, "when_to_use": _S, "tags": pl.List(_S),
        "status_reason": _S, "exposures": _I32, "citations": _I32, "successes": _I32, "success_rate": _F,
        "mean_reward": _F, "base_rate": _F, "advantage": _F, "q": _F, "lower": _F, "upper": _F,
        "last_exposed_in": _I32, "stale": _B, "value": _F, "added_in": _I32,
        "updated_in": _I32, "by": _S, "key": _S, "support": _S, "n_evidence": _I32,
    },
    "versions": {
        "version": _I32, "parent": _I32, "created_at": _T, "summary": _S, "n_items": _I32, "n_active": _I32,
        "n_retired": _I32, "n_add": _I32, "n_update": _I32, "n_merge": _I32, "n_retire": _I32,
        "content_hash": _S, "git_commit": _S,
    },
    "diff": {
        "id": _S, "change": _S, "fields": pl.List(_S), "section": _S, "status_before": _S, "status_after": _S,
        "q_before": _F, "q_after": _F, "support_before": _S, "support_after": _S, "text_before": _S,
        "text_after": _S,
    },
    "fit": {
        "budget": _I32, "id": _S, "section": _S, "included": _B, "tokens": _I32, "value": _F, "text": _S,
    },
    "budget_fill": {
        "version": _I32, "budget": _I32, "n_active": _I32, "n_included": _I32, "tokens": _I32,
        "full_tokens": _I32, "fill": _F,
    },
}

DIFF_FIELDS = ("text", "status", "status_reason", "when_to_use", "tags", "support",
               "exposures", "citations", "successes", "q", "lower", "upper", "base_rate")


class RunView:
    """One run: `info` (its row of `bank.runs()`), `steps` and `tool_calls` frames; renders as a conversation."""

    def __init__(self, con, run_id: str):
        self.id = frames.resolve_run(con, run_id)
        self.info: dict = frames.runs(con, run_id=self.id).row(0, named=True)
        self.steps: pl.DataFrame = frames.steps(con, run_id=self.id)
        self.tool_calls: pl.DataFrame = frames.tool_calls(con, run_id=self.id)

    def __repr__(self) -> str:
        i = self.info
        reward = f" (reward {i['reward']:g})" if i["reward"] is not None else ""
        return (f"Run {self.id}: task {i['task_id']}, {i['outcome']}{reward}, {plural(len(self.steps), 'message')}, "
                f"{plural(i['n_tool_calls'], 'tool call')}, {plural(i['n_tool_errors'], 'tool error')}")

    def _repr_html_(self) -> str:
        from memkit.display import run_html

        return run_html(self.info, self.steps)


def _item_rows(pb: "Playbook") -> pl.DataFrame:
    from memkit.prompts.export import item_value

    rows = [{
        **i.model_dump(include={"id", "section", "status", "text", "when_to_use", "tags", "status_reason"}),
        **i.utility.model_dump(exclude={"reflector_tags"}), "value": item_value(i),
        **i.provenance.model_dump(include={"added_in", "updated_in", "by", "key", "support"}),
        "n_evidence": len(i.provenance.evidence),
    } for i in pb.items]
    return pl.DataFrame(rows, schema=SCHEMAS["items"], orient="row") if rows else pl.DataFrame(schema=SCHEMAS["items"])


class PlaybookView:
    """A playbook's items, versions and diffs as polars frames, and what fits a token budget."""

    def __init__(self, bank: "Bank", name: str):
        self.bank, self.name = bank, name
        if not bank.playbook_path(name).exists() and not self._version_numbers():
            raise PlaybookNotFound(f"no playbook {name!r} in {bank.playbooks_dir} or in this bank's versions")

    def _version_numbers(self) -> list[int]:
        return [r[0] for r in self.bank.con.execute(
            "SELECT version FROM playbook_versions WHERE playbook = ? ORDER BY version", [self.name]).fetchall()]

    def load(self, version: Optional[int] = None) -> "Playbook":
        """The playbook model: the file on disk (version=None) or a recorded version."""
        return self.bank.load_playbook(self.name, version)

    def items(self, version: Optional[int] = None) -> pl.DataFrame:
        """One row per item, as in the file (version=None) or as recorded at `version`.

        Columns (polars dtype):
            id             String        stable item id (pit-00012)
            section        String        concepts | strategies | pitfalls | procedures | ...
            status         String        active | retired | quarantined
            text           String        the lesson
            when_to_use    String        when it applies
            tags           List(String)  tool:..., domain:..., error
            status_reason  String        why it was retired or quarantined
            exposures      Int32         runs that carried it
            citations      Int32         runs that cited its id
            successes      Int32         successful runs among the exposures
            success_rate   Float64       successes / exposures
            mean_reward    Float64       mean outcome (reward, else 1 success / 0.5 partial / 0 failure)
            base_rate      Float64       outcome rate of the same task families' runs without the item
            advantage      Float64       outcome rate with the item (citations weighted up) - base_rate
            q              Float64       moving average of the outcomes it was shown in (MemRL)
            lower          Float64       lower confidence bound of the advantage
            upper          Float64       upper confidence bound of the advantage
            last_exposed_in Int32        the last version a run carried it in
            stale          Boolean       not shown for `scoring.stale_after` versions (flagged, never retired)
            value          Float64       what a budgeted export ranks by (advantage once proven, else an evidence prior)
            added_in       Int32         version that added it
            updated_in     Int32         version that last updated it
            by             String        reflector that wrote it (heuristic, a model name)
            key            String        the reflector's key for the lesson (sig:TOOL:HASH, ...)
            support        String        "k of n runs"
            n_evidence     Int32         evidence run ids kept
        """
        return _item_rows(self.load(version))

    def versions(self) -> pl.DataFrame:
        """One row per recorded version, oldest first, with item and operation counts.

        Columns (polars dtype):
            version       Int32     version number
            parent        Int32     the version it was made from
            created_at    Datetime  when it was recorded
            summary       String    operations in one line ("10 UPDATE, 4 ADD")
            n_items       Int32     items in it (any status)
            n_active      Int32     active items
            n_retired     Int32     retired items
            n_add         Int32     ADD operations that made it
            n_update      Int32     UPDATE operations
            n_merge       Int32     MERGE operations
            n_retire      Int32     RETIRE operations
            content_hash  String    hash of its canonical content
            git_commit    String    commit of the playbook file, when committed
        """
        def count(column: str, path: str, value: str) -> str:
            return (f"(SELECT count(*) FROM unnest(json_extract_string(v.{column}, '{path}')) AS u(x)"
                    f" WHERE u.x = '{value}')::INTEGER")

        return frames.query(self.bank.con, f"""
            SELECT v.version, v.parent, v.created_at, v.summary,
                   json_array_length(v.content, '$.items')::INTEGER AS n_items,
                   {count('content', '$.items[*].status', 'active')} AS n_active,
                   {count('content', '$.items[*].status', 'retired')} AS n_retired,
                   {count('operations', '$[*].op', 'ADD')} AS n_add,
                   {count('operations', '$[*].op', 'UPDATE')} AS n_update,
                   {count('operations', '$[*].op', 'MERGE')} AS n_merge,
                   {count('operations', '$[*].op', 'RETIRE')} AS n_retire,
                   v.content_hash, v.git_commit
            FROM playbook_versions v WHERE v.playbook = ? ORDER BY v.version
        """, [self.name])

    def diff(self, v1: Optional[int] = None, v2: Optional[int] = None) -> pl.DataFrame:
        """Items added, removed or changed from v1 to v2 (default: the last two versions).

        Columns (polars dtype):
            id              String        the item
            change          String        added | removed | changed
            fields          List(String)  what changed: text, status, status_reason, when_to_use, tags,
                                          support, exposures, citations, successes, q, lower, upper, base_rate
            section         String        its section
            status_before   String        status in v1 (null when added)
            status_after    String        status in v2 (null when removed)
            q_before        Float64       q in v1
            q_after         Float64       q in v2
            support_before  String        support in v1
            support_after   String        support in v2
            text_before     String        text in v1
            text_after      String        text in v2
        """
        versions = self._version_numbers()
        if not versions:
            raise PlaybookNotFound(f"playbook {self.name!r} has no recorded versions")
        v2 = versions[-1] if v2 is None else v2
        if v1 is None:
            earlier = [v for v in versions if v < v2]
            v1 = earlier[-1] if earlier else v2
        a, b = self.items(v1), self.items(v2)
        joined = a.join(b, on="id", how="full", suffix="_after", coalesce=True)
        present_a, present_b = pl.col("section").is_not_null(), pl.col("section_after").is_not_null()
        changed = [pl.when(~pl.col(f).eq_missing(pl.col(f"{f}_after"))).then(pl.lit(f)) for f in DIFF_FIELDS]
        out = joined.with_columns(
            change=pl.when(~present_a).then(pl.lit("added")).when(~present_b).then(pl.lit("removed"))
            .otherwise(pl.lit("changed")),
            fields=pl.concat_list(changed).list.drop_nulls(),
            section=pl.coalesce("section_after", "section"),
        ).with_columns(fields=pl.when(pl.col("change") == "changed").then(pl.col("fields"))
                       .otherwise(pl.lit([], dtype=pl.List(pl.String))))
        out = out.filter((pl.col("change") != "changed") | (pl.col("fields").list.len() > 0))
        return out.select(
            "id", "change", "fields", "section",
            pl.col("status").alias("status_before"), pl.col("status_after"),
            pl.col("q").alias("q_before"), pl.col("q_after"),
            pl.col("support").alias("support_before"), pl.col("support_after"),
            pl.col("text").alias("text_before"), pl.col("text_after"),
        ).sort("change", "id").cast(SCHEMAS["diff"])

    def fit(self, budgets: Iterable[int] = (500, 1000, 2000), target: str = "agents-md",
            version: Optional[int] = None) -> pl.DataFrame:
        """For each budget, every active item and whether a budgeted export includes it.

        Columns (polars dtype):
            budget    Int32    token budget
            id        String   the item
            section   String   its section
            included  Boolean  the export at this budget includes it
            tokens    Int32    tokens it adds to the full export (leave-one-out)
            value     Float64  what the export ranks by (value per token decides)
            text      String   the lesson
        """
        from memkit.prompts.export import Exporter

        pb = self.load(version)
        cfg = self.bank.config
        exporter = Exporter(pb, target, cfg.sections, cfg.export.encoding)
        active = pb.active()
        full = exporter.tokens(exporter.render(active))
        cost = {i.id: full - exporter.tokens(exporter.render([j for j in active if j.id != i.id])) for i in active}
        items = _item_rows(pb).filter(pl.col("status") == "active").select("id", "section", "value", "text")
        parts = []
        for budget in budgets:
            included = set(self.bank.export(self.name, target, budget=budget, version=version).included)
            parts.append(items.with_columns(budget=pl.lit(budget), included=pl.col("id").is_in(list(included)),
                                            tokens=pl.col("id").replace_strict(cost, default=None)))
        if not parts:
            return pl.DataFrame(schema=SCHEMAS["fit"])
        return pl.concat(parts).select(list(SCHEMAS["fit"])).cast(SCHEMAS["fit"])

    def budget_fill(self, budgets: Iterable[int] = (500, 1000, 2000), target: str = "agents-md") -> pl.DataFrame:
        """For each recorded version and budget: how many active items fit and how full the budget is.

        Columns (polars dtype):
            version      Int32    playbook version
            budget       Int32    token budget
            n_active     Int32    active items in that version
            n_included   Int32    items the budgeted export includes
            tokens       Int32    tokens of the budgeted export
            full_tokens  Int32    tokens of the export with every active item
            fill         Float64  tokens / budget
        """
        from memkit.prompts.export import Exporter

        cfg, rows = self.bank.config, []
        for version in self._version_numbers():
            pb = self.load(version)
            exporter = Exporter(pb, target, cfg.sections, cfg.export.encoding)
            full = exporter.tokens(exporter.render(pb.active()))
            for budget in budgets:
                r = self.bank.export(self.name, target, budget=budget, version=version)
                rows.append((version, budget, len(pb.active()), len(r.included), r.tokens, full, r.tokens / budget))
        return pl.DataFrame(rows, schema=SCHEMAS["budget_fill"], orient="row")

    def __repr__(self) -> str:
        pb = self.load()
        return f"Playbook {self.name} v{pb.version}: {len(pb.active())} active of {len(pb.items)} items"

    def _repr_html_(self) -> str:
        from memkit.display import playbook_html

        pb = self.load()
        return playbook_html(self.name, pb.version, _item_rows(pb))
