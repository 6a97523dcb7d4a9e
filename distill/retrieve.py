"""Retrieval of the items relevant to a task, in two phases (MemRL): recall a pool of candidates
by embedding similarity, then rank the pool by similarity blended with utility, so an item that
has proven itself on runs like this one beats a merely similar one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from memkit.config import RetrieveConfig
from memkit.model import Playbook, PlaybookItem
from memkit.stores.vectors import VectorStore


@dataclass
class Retrieved:
    item: PlaybookItem
    similarity: float
    utility: float
    score: float

    def as_dict(self) -> dict:
        return {"id": self.item.id, "section": self.item.section, "text": self.item.text,
                "when_to_use": self.item.when_to_use, "similarity": round(self.similarity, 4),
                "utility": round(self.utility, 4), "score": round(self.score, 4)}


def utility(item: PlaybookItem) -> float:
    """An item's value in [0, 1]: its outcome average (q) once runs carried it, else a neutral 0.5."""
    u = item.utility
    return u.q if u.exposures and u.q is not None else 0.5


def retrieve(playbook: Playbook, task: str, store: VectorStore, cfg: RetrieveConfig, k: Optional[int] = None) -> list[Retrieved]:
    from memkit.distill.curate_llm import sync

    k = k or cfg.k
    if k <= 0 or not task.strip():
        return []
    sync(store, playbook)
    query = store.embedder.embed([task])[0]
    active = {i.id: i for i in playbook.active()}
    pool = [h for h in store.search("items", playbook.name, query, k * max(1, cfg.pool))
            if h.key in active and h.similarity >= cfg.min_similarity]
    w = cfg.utility_weight
    ranked = [Retrieved(active[h.key], h.similarity, utility(active[h.key]),
                        (1 - w) * h.similarity + w * utility(active[h.key])) for h in pool]
    ranked.sort(key=lambda r: (-r.score, -r.similarity, r.item.id))
    return ranked[:k]
