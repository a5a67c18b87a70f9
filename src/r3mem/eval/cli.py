"""`r3mem eval SUBCOMMAND`: each subcommand is a module with `add_arguments`, `run`, `plot`.

A module's `run(args, r3)` returns an `EvalResult`; this file loads the model once,
prints the table and writes `--json` / `--plot`.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
from collections.abc import Collection

from r3mem.eval.common import format_table, spell_out, write_outputs
from r3mem.machine import run_info

# subcommand -> (module, help); each module declares its own default data in add_arguments
SUBCOMMANDS = {
    "reconstruct": ("r3mem.eval.reconstruct", "reconstruction fidelity vs ratio"),
    "perplexity": ("r3mem.eval.perplexity", "long-context perplexity with memory"),
    "qa": ("r3mem.eval.qa", "question answering over memory"),
    "locomo": ("r3mem.eval.locomo", "conversational memory (LoCoMo)"),
    "cost": ("r3mem.eval.cost", "bytes per token, throughput, peak RSS"),
}


def register(parser: argparse.ArgumentParser, tasks: Collection[str] | None = None) -> None:
    """Add the tasks; only those in `tasks` (default: all) import their module for its arguments,
    since the modules import torch and `r3mem --help` should not wait for it."""
    sub = parser.add_subparsers(dest="eval_task", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(eval_module=module_name)
        if tasks is not None and name not in tasks:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue  # not built yet: the subcommand is listed but refuses to run
        module.add_arguments(p)


def run(args: argparse.Namespace, load) -> int:
    from r3mem.errors import R3MemError

    try:
        module = importlib.import_module(args.eval_module)
    except ModuleNotFoundError as exc:
        raise R3MemError(f"eval {args.eval_task} is not available in this build") from exc
    r3 = load(args)
    began = time.monotonic()
    result = module.run(args, r3)
    # the evaluation's own time, model load excluded: what a decoding setting costs
    result.extra.setdefault("wall_s", round(time.monotonic() - began, 1))
    result.extra.setdefault("run", run_info())
    # the settings a module says shape its figures are spelled out, so the command outlives their defaults
    pinned = module.pinned_flags(args) if hasattr(module, "pinned_flags") else {}
    argv = spell_out(list(getattr(args, "argv", sys.argv[1:])), pinned)
    result.extra.setdefault("command", "r3mem " + shlex.join(argv))
    print(format_table(result.rows))
    if hasattr(module, "summary"):
        print(module.summary(result))
    write_outputs(result, args.json, args.plot, getattr(module, "plot", None))
    return 0
