"""`make results`: run every evaluation with a bounded `--limit`, then write docs/results.md.

The commands live here, once: the page prints each command beside its table, so
every published figure names what produced it, on which machine, on which date.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from r3mem.decode.options import Decoding
from r3mem.eval.common import format_table

# Sized to finish in about 30 minutes on a 2-core CPU.
COMMANDS = {
    "reconstruct": "eval reconstruct --limit 8 --ratios 2,4,8,16",
    # the same segments decoded greedily, beside the default beam search: what the beams buy
    "reconstruct-greedy": "eval reconstruct --limit 8 --ratios 2,4,8,16 --methods r3mem --beams 1",
    "perplexity": "eval perplexity --limit 3 --history 512,1024,2048,all",
    "qa": "eval qa --limit 16",
    # every dev conversation and question, through the store (about 40 minutes: 2,760 adds);
    # answers only for the first 10 questions of each, as the reader is the slow part
    "locomo": "eval locomo --limit 1000 --answers 10",
    "cost": "eval cost --limit 2048 --ratios 4,8",
}


def run_all(out: Path, tasks: list[str]) -> dict[str, float]:
    """Run each task's command into out/NAME.json and out/NAME.png; return wall seconds."""
    out.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for name in tasks:
        argv = [sys.executable, "-m", "r3mem.cli", *shlex.split(COMMANDS[name]),
                "--json", str(out / f"{name}.json"), "--plot", str(out / f"{name}.png")]
        t0 = time.perf_counter()
        subprocess.run(argv, check=True)
        seconds[name] = time.perf_counter() - t0
        result = json.loads((out / f"{name}.json").read_text())
        result["wall_s"] = round(seconds[name])  # kept with the result, so a later partial rerun keeps it
        (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return seconds


def decoding(result: dict) -> str:
    """How a result's r3mem rows were decoded; results written before a setting existed ran without it."""
    return Decoding.from_record(result).describe()


def render(out: Path, seconds: dict[str, float]) -> str:
    lines = ["# r3mem results", "",
             "Regenerate with `make results` (runs `python -m r3mem.eval.report`). Each table comes from the "
             "JSON beside it in `docs/results/`; the checkpoint column says which weights were measured "
             "(`untrained-seed0` means no trained checkpoint was loaded).", ""]
    for name in COMMANDS:
        path = out / f"{name}.json"
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        run = result.get("run", {})
        wall = seconds.get(name, result.get("wall_s"))
        lines += [f"## {name}", "",
                  # the command the run recorded, flags it left to a default spelled out, where it has one
                  f"- command: `{result.get('command') or 'r3mem ' + COMMANDS[name]}`",
                  f"- data: `{Path(result['data']).name}`; model: {result['model']}; "
                  f"checkpoint: `{result['checkpoint']}`",
                  f"- machine: {run.get('machine', '?')}, {run.get('threads', '?')} threads, torch "
                  f"{run.get('torch', '?')}; date: {run.get('date', '?')}"
                  + (f"; wall time {wall:.0f} s" if wall is not None else "")
                  + (f"; r3mem decoded {decoding(result)}" if "beams" in result else ""), "",
                  "```", format_table(result["rows"]), "```", ""]
        if (out / f"{name}.png").is_file():
            lines += [f"![{name}](results/{name}.png)", ""]
    # figures made by scripts rather than one eval command (the recall fusion's fit and ablation),
    # kept by hand beside the JSON with their own commands
    for extra in sorted(out.glob("*.section.md")):
        lines += [extra.read_text().rstrip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/results")
    parser.add_argument("--tasks", default=",".join(COMMANDS))
    parser.add_argument("--render-only", action="store_true", help="rebuild the page from existing JSON")
    args = parser.parse_args(argv)
    out = Path(args.out)
    seconds = {} if args.render_only else run_all(out, args.tasks.split(","))
    page = out.parent / "results.md"
    page.write_text(render(out, seconds))
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
