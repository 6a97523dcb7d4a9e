#!/usr/bin/env python
"""Prompt tokens per distilled run as the playbook grows: memkit's retrieval-scoped curator vs a
whole-playbook curator prompt (ACE-style), measured in the same run.

    python bench/distill_tokens.py                 # 40 runs, playbooks of 50 and 500 items
    python bench/distill_tokens.py --runs 80 --sizes 50 500 2000

For each size, a fresh bank gets the same runs of the bundled tau-bench sample, ingested as runs
that carried a synthetic playbook of that many distinct items (so reflections also tag the items
the run had in context), and `distill --model scripted/bench` runs the whole LLM path through
litellm with the offline scripted model. Every prompt the model receives is counted with tiktoken
(o200k_base). The ACE-style figure takes each curator prompt memkit actually sent and swaps its
"related items" block for the whole playbook, which is what a curator that reads the full
playbook would be sent for the same candidates.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "data" / "samples" / "tau-bench-airline" / "gpt-4o-airline.json"

TOOLS = ["book_reservation", "update_reservation_flights", "update_reservation_passengers", "cancel_reservation",
         "update_reservation_baggages", "send_certificate", "get_user_details", "get_reservation_details",
         "search_direct_flight", "search_onestop_flight", "list_all_airports", "calculate", "transfer_to_human_agents",
         "think"]
CONCERNS = [
    ("pitfalls", "it fails when the payment amounts do not add up to the total price", "paying for a booking"),
    ("pitfalls", "the cabin class of the existing reservation must be kept unless the user asks otherwise", "changing flights"),
    ("pitfalls", "a basic economy reservation cannot be modified", "modifying a reservation"),
    ("pitfalls", "flights that have already departed cannot be changed or cancelled", "changing or cancelling flights"),
    ("pitfalls", "the number of passengers cannot change after booking", "updating passengers"),
    ("pitfalls", "gift cards and certificates have balances that must cover the amount charged", "choosing payment methods"),
    ("pitfalls", "insurance cannot be added after the booking was made", "adding travel insurance"),
    ("pitfalls", "free checked bags depend on the membership tier and the cabin", "adding baggage"),
    ("strategies", "look up the user's saved payment methods and membership tier first", "starting a booking"),
    ("strategies", "read the reservation back to the user and get an explicit yes before acting", "any change to a reservation"),
    ("strategies", "search both direct and one-stop flights before saying none are available", "finding flights"),
    ("strategies", "compute refunds and price differences with the calculator, never in your head", "quoting amounts"),
    ("strategies", "ask which passenger the change is for when the reservation has several", "multi-passenger reservations"),
    ("strategies", "explain the cancellation policy before cancelling, including who gets a refund", "cancelling"),
    ("strategies", "offer a certificate only when the policy allows compensation for the case", "handling complaints"),
    ("concepts", "a reservation holds flights, passengers, payment history and a cabin shared by all flights", "reasoning about reservations"),
    ("concepts", "one-stop itineraries are two flights that must both be available on their dates", "reasoning about itineraries"),
    ("procedures", "fetch the user, fetch the reservation, confirm the change, then call the update tool once", "changing a reservation"),
    ("procedures", "collect origin, destination, dates, cabin, passengers and payment before booking", "booking a trip"),
    ("procedures", "transfer to a human only after stating why the request is outside the policy", "escalating"),
]
OPENERS = ["Before calling `{tool}`, remember that {concern}.", "When {when}, {concern}; check it before `{tool}`.",
           "`{tool}`: {concern}, so verify first.", "Agents often forget that {concern} ({when}, `{tool}`).",
           "If you are about to call `{tool}` while {when}, note that {concern}."]


def synthetic_items(n: int):
    from memkit.model import PlaybookItem, Provenance, section_prefix

    items, counters = [], {}
    for k in range(n):
        section, concern, when = CONCERNS[k % len(CONCERNS)]
        tool = TOOLS[(k // len(CONCERNS)) % len(TOOLS)]
        opener = OPENERS[(k // (len(CONCERNS) * len(TOOLS))) % len(OPENERS)]
        variant = k // (len(CONCERNS) * len(TOOLS) * len(OPENERS))
        text = opener.format(tool=tool, concern=concern, when=when) + (f" (variant {variant})" if variant else "")
        counters[section] = counters.get(section, 0) + 1
        items.append(PlaybookItem(id=f"{section_prefix(section)}-{counters[section]:05d}", section=section, text=text,
                                  when_to_use=f"{when}, around `{tool}`", tags=[f"tool:{tool}", "domain:airline"],
                                  provenance=Provenance(added_in=1, by="bench")))
    return items


def measure(size: int, runs: list[dict], workdir: Path) -> dict:
    import memkit
    from memkit.distill import scripted
    from memkit.model import Operation, Playbook
    from memkit.stores import playbook_store as store
    from memkit.tokens import count_tokens

    root = workdir / f"bank-{size}"
    name = "bench"
    with memkit.init(root) as bank:
        pb = Playbook(name=name, version=1, items=synthetic_items(size))
        store.record_version(bank.con, pb, None, [Operation(op="EDIT", item_id="*", reason=f"{size} synthetic items")])
        bank.playbook_path(name).parent.mkdir(parents=True, exist_ok=True)
        bank.playbook_path(name).write_text(store.to_yaml(pb), encoding="utf-8")
        path = root / "runs.json"
        path.write_text(json.dumps(runs), encoding="utf-8")
        bank.ingest([path], playbook=f"{name}@1")
        model = scripted.model()
        model.reset()
        result = bank.distill(name, model="scripted/bench")
        prompts = list(model.prompts)
        whole = json.dumps([{"id": i.id, "section": i.section, "text": i.text, "when_to_use": i.when_to_use}
                            for i in pb.active()], ensure_ascii=False, separators=(", ", ": "))
    report = result.llm
    done = report["runs_done"]

    def tokens(messages):
        return sum(count_tokens(m.get("content") or "") + 4 for m in messages)

    def is_curator(messages):
        return "schema `CuratorDecision`" in messages[0]["content"]

    total = sum(tokens(p) for p in prompts)
    curator = [p for p in prompts if is_curator(p)]
    curator_tokens = sum(tokens(p) for p in curator)
    related = re.compile(r"(^Related playbook items[^\n]*\n)(\[.*\])$", re.M)
    ace = 0
    for p in curator:
        swapped = [dict(m) for m in p]
        swapped[-1]["content"] = related.sub(lambda m: m.group(1) + whole, swapped[-1]["content"])
        ace += tokens(swapped)
    reflection = total - curator_tokens
    return {"size": size, "runs": done, "calls": len(prompts), "curator_calls": len(curator),
            "per_run": total / done, "reflection_per_run": reflection / done, "curator_per_run": curator_tokens / done,
            "ace_curator_per_run": ace / done, "ace_per_run": (reflection + ace) / done,
            "insights": result.insights, "operations": len(result.operations)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=40, help="runs of the sample to distill (default 40)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 500], help="playbook sizes (default 50 500)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    runs = json.loads(SAMPLE.read_text(encoding="utf-8"))[: args.runs]
    with tempfile.TemporaryDirectory(prefix="memkit-bench-") as tmp:
        rows = [measure(size, runs, Path(tmp)) for size in args.sizes]
    base, top = rows[0], rows[-1]
    ratio = top["per_run"] / base["per_run"]
    ace_ratio = top["ace_per_run"] / base["ace_per_run"]
    if args.json:
        print(json.dumps({"rows": rows, "ratio": ratio, "ace_ratio": ace_ratio}, indent=2))
        return 0
    print(f"Prompt tokens per distilled run (tiktoken o200k_base), {base['runs']} runs of the tau-bench airline sample,"
          " scripted model through litellm:\n")
    print(f"{'playbook':>9} {'calls':>6} {'reflect/run':>12} {'curate/run':>11} {'total/run':>10} "
          f"{'ACE curate/run':>15} {'ACE total/run':>14}")
    for r in rows:
        print(f"{r['size']:>9} {r['calls']:>6} {r['reflection_per_run']:>12.0f} {r['curator_per_run']:>11.0f}"
              f" {r['per_run']:>10.0f} {r['ace_curator_per_run']:>15.0f} {r['ace_per_run']:>14.0f}")
    print(f"\nmemkit: {top['size']} vs {base['size']} items = {ratio:.2f}x prompt tokens per run (target <= 1.2x)")
    print(f"whole-playbook curator (ACE-style), same candidates: {ace_ratio:.2f}x"
          f" ({top['ace_per_run'] / top['per_run']:.1f}x memkit's at {top['size']} items)")
    print(f"curator prompts alone: memkit {top['curator_per_run'] / base['curator_per_run']:.2f}x,"
          f" ACE-style {top['ace_curator_per_run'] / base['ace_curator_per_run']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
