"""What every `r3mem eval` subcommand shares: arguments, the result shape, output files.

The JSON shape is stable and read by other tools:
`{"task", "data", "checkpoint", "model", "rows": [{"method", ...metric fields}], ...}`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r3mem.errors import InvalidInput
from r3mem.retention_data import data_dir

DEFAULT_DATA = data_dir()  # one rule for where the data kit is, the product's


@dataclass
class EvalResult:
    """One evaluation run: what was measured, on what, with which weights; a row per method."""

    task: str
    data: str
    checkpoint: str
    model: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "data": self.data, "checkpoint": self.checkpoint, "model": self.model,
                "rows": self.rows, **self.extra}


def add_common_arguments(parser: argparse.ArgumentParser, default_data: str) -> None:
    parser.add_argument("--data", default=str(DEFAULT_DATA / default_data), help="data file or directory")
    parser.add_argument("--limit", type=int, help="use only the first N items (quick runs)")
    parser.add_argument("--checkpoint", help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--model", help="base model (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--device", help="torch device")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the result JSON here")
    parser.add_argument("--plot", help="write a PNG plot here")


def require_path(path: str) -> Path:
    source = Path(path)
    if not source.exists():
        raise InvalidInput(f"evaluation data not found: {source}")
    return source


def spell_out(argv: list[str], flags: dict[str, str]) -> list[str]:
    """argv with each of `flags` the user left to its default appended with the value the run used.

    A recorded command that leans on a default stops reproducing its figures when the default
    moves (8 beams replaced 4 at commit ea94102), so the settings that shape a figure are written
    out. A flag counts as typed in either spelling, `--beams 4` or `--beams=4`.
    """
    typed = {arg.split("=", 1)[0] for arg in argv}
    return argv + [part for flag, value in flags.items() if flag not in typed for part in (flag, value)]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table over the union of row keys, in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]

    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    widths = {c: max(len(c), *(len(cell(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines.append("  ".join("-" * widths[c] for c in columns))
    lines += ["  ".join(cell(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def write_outputs(result: EvalResult, json_path: str | None, plot_path: str | None,
                  plot: Callable[[EvalResult, Path], None] | None) -> None:
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    if plot_path and plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        Path(plot_path).parent.mkdir(parents=True, exist_ok=True)
        plot(result, Path(plot_path))
