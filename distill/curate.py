"""The curator: candidate insights become delta operations on the playbook, never a rewrite."""

from __future__ import annotations

from memkit.model import Insight, Operation, Playbook, PlaybookItem, Provenance


def curate(playbook: Playbook, insights: list[Insight], version: int) -> list[Operation]:
    """Apply insights to `playbook` in place: ADD what is new, UPDATE what changed, keep the rest."""
    ops: list[Operation] = []
    by_key = playbook.by_key()
    for ins in insights:
        item = by_key.get(ins.key)
        if item is None:
            item = PlaybookItem(
                id=playbook.next_id(ins.section), section=ins.section, text=ins.text, when_to_use=ins.when_to_use,
                tags=ins.tags, provenance=Provenance(added_in=version, by=ins.by, key=ins.key, support=ins.support,
                                                    evidence=ins.evidence),
            )
            playbook.items.append(item)
            by_key[ins.key] = item
            ops.append(Operation(op="ADD", item_id=item.id, reason=ins.support))
            continue
        if item.status == "retired":
            continue  # retired on evidence or by hand: new support alone does not bring it back
        changed = (item.text, item.provenance.support, item.provenance.evidence) != (ins.text, ins.support, ins.evidence)
        if changed:
            item.text, item.when_to_use = ins.text, ins.when_to_use
            item.tags = sorted(set(item.tags) | set(ins.tags), key=(item.tags + ins.tags).index)
            item.provenance.support, item.provenance.evidence = ins.support, ins.evidence
            item.provenance.updated_in = version
            ops.append(Operation(op="UPDATE", item_id=item.id, reason=ins.support))
    return ops
