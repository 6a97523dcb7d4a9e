from pathlib import Path
from typing import Optional

import orjson
import typer

from memkit.cli.common import JsonOption, console, emit_json, fail, handle_errors

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "samples" / "tau-bench-airline" / "gpt-4o-airline.json"


@handle_errors
def demo(
    directory: Path = typer.Argument(Path("demo"), help="Folder for the demo bank (created)."),
    sample: Optional[Path] = typer.Option(None, "--sample", help="tau-bench results file (default: the bundled sample)."),
    json: bool = JsonOption,
):
    """Run the whole loop on the bundled tau-bench sample, in two halves, and export context files.

    Init a bank in DIRECTORY, ingest the first half of the runs, distill, ingest the second half,
    distill again, and export AGENTS.md and a system prompt. Running it again changes nothing.

    Example: memkit demo demo
    """
    from memkit.bank import Bank
    from memkit.config import CONFIG_FILE, DEFAULT_CONFIG_TEXT
    from memkit.fileio import write_atomic

    say = (lambda text: None) if json else console.print
    sample = sample or SAMPLE
    if not sample.exists():
        fail(f"sample {sample} not found; pass --sample path/to/tau-bench-results.json")
    runs = orjson.loads(sample.read_bytes())
    half = len(runs) // 2
    parts = directory / ".memkit" / "demo-runs"
    for i, chunk in enumerate((runs[:half], runs[half:]), start=1):
        write_atomic(parts / f"part-{i}.jsonl", "".join(orjson.dumps(r).decode() + "\n" for r in chunk))
    if not (directory / CONFIG_FILE).exists():
        write_atomic(directory / CONFIG_FILE, DEFAULT_CONFIG_TEXT.replace("playbook: default", "playbook: airline")
                     .replace("domain: null", "domain: airline"))
    summary: dict = {"bank": str(directory / ".memkit"), "steps": []}
    say(f"$ memkit init {directory}")
    bank, _ = Bank.init(directory)
    with bank:
        for i in (1, 2):
            part = parts / f"part-{i}.jsonl"
            say(f"$ memkit ingest {part}")
            r = bank.ingest([part])
            outcomes = "".join(f", {n} {k}" for k, n in sorted(r.outcomes.items()))
            say(f"  {r.added} runs added{outcomes}; {r.duplicates} duplicates, {r.rejected} rejected")
            say("$ memkit distill --playbook airline")
            d = bank.distill("airline")
            say(f"  {d.new_runs} new runs, {len(d.operations)} operations: " + (f"v{d.version}" if d.version else "no changes"))
            summary["steps"].append({"ingest": r.as_dict(), "distill": d.as_dict()})
        playbook_file = bank.playbook_path("airline")
        outputs = {playbook_file.with_name("airline.AGENTS.md"): "agents-md",
                   playbook_file.with_name("airline.system-prompt.md"): "system-prompt"}
        for path, target in outputs.items():
            say(f"$ memkit export airline --target {target} -o {path}")
            e = bank.export("airline", target, output=path)
            say(f"  {len(e.included)} items, {e.tokens} tokens")
        summary["version"] = bank.versions("airline")[-1]["version"]
    summary["playbook"] = str(playbook_file)
    summary["context_files"] = [str(p) for p in outputs]
    if json:
        return emit_json(summary)
    say("\nOutputs:")
    say(f"  bank:          {summary['bank']}")
    say(f"  playbook:      {playbook_file} (v{summary['version']})")
    for path in outputs:
        say(f"  context file:  {path}")
    say(f"Next: memkit playbook show airline --bank {directory}   (also: playbook log, playbook diff, stats)")
