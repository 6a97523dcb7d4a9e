"""What LLM work cost, per command run, from the `llm_calls` ledger."""

from __future__ import annotations

from typing import Optional

from memkit.stores.database import has_table


def costs(con, limit: Optional[int] = None) -> list[dict]:
    if not has_table(con, "llm_calls"):
        return []
    rows = con.execute(
        f"""SELECT command_id, any_value(command), min(created_at), string_agg(DISTINCT model, ', ' ORDER BY model),
                   count(*) FILTER (WHERE NOT cache_hit AND status IN ('ok', 'invalid') AND purpose <> 'embed'),
                   count(*) FILTER (WHERE cache_hit),
                   count(*) FILTER (WHERE status = 'invalid'),
                   count(*) FILTER (WHERE status = 'error'),
                   count(*) FILTER (WHERE purpose = 'embed'),
                   coalesce(sum(tokens_in), 0), coalesce(sum(tokens_out), 0), coalesce(sum(cost_usd), 0),
                   count(*) FILTER (WHERE NOT cache_hit AND cost_usd IS NULL AND status = 'ok')
            FROM llm_calls GROUP BY 1 ORDER BY 3 DESC, 1 {'LIMIT ' + str(int(limit)) if limit else ''}"""
    ).fetchall()
    keys = ("id", "command", "started_at", "models", "calls", "cache_hits", "invalid_replies", "errors",
            "embedding_calls", "tokens_in", "tokens_out", "cost_usd", "unpriced_calls")
    out = []
    for row in rows:
        d = dict(zip(keys, row))
        d["started_at"] = str(d["started_at"])
        d["cost_usd"] = round(float(d["cost_usd"]), 6)
        out.append(d)
    return out
