"""Checking a command's paths before it loads a model or does any work.

`r3mem compress book.txt -o somedir` used to compress for minutes and only then find that
it cannot write a directory. `preflight` looks at every path a command names, by the table
below, and refuses a missing or unreadable input, a directory given as a file, an output
whose directory is missing or not writable, and a `--model` or `--checkpoint` directory that
holds no model or checkpoint, each as one `R3MemError` (one stderr line, a documented exit code).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from r3mem.errors import CheckpointError, InvalidInput, ModelNotFound

# command -> (argument names read as input files, argument names written as output files)
PATHS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "compress": (("file",), ("output",)),
    "expand": ((), ("output",)),  # a memory file is read by `Memory.load`, which says what is wrong with it
    "add": (("file",), ()),
    "import": (("path",), ()),
    "export": ((), ("path",)),
    "bench": ((), ("json",)),
    "bench-recall": ((), ("json",)),
}


def check_input(path: str) -> None:
    source = Path(path)
    if source.is_dir():
        raise InvalidInput(f"{source} is a directory, not a file")
    if not source.is_file():
        raise InvalidInput(f"no such file: {source}")
    if not os.access(source, os.R_OK):
        raise InvalidInput(f"cannot read {source}: permission denied")


def check_output(path: str, what: str = "output") -> None:
    target = Path(path)
    if target.is_dir():
        raise InvalidInput(f"{what} {target} is a directory; give a file path inside it")
    folder = target.parent
    if not folder.is_dir():
        raise InvalidInput(f"output directory does not exist: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidInput(f"cannot write to the output directory {folder}: permission denied")
    if target.exists() and not os.access(target, os.W_OK):
        raise InvalidInput(f"cannot overwrite {target}: permission denied")


def check_model_dirs(model: str | None, checkpoint: str | None) -> None:
    """A `--model` that names an existing path must be a model directory; `--checkpoint`, a checkpoint one.

    A `--model` that is no path may be an id in the local Hugging Face cache: the loader decides."""
    if model is not None and Path(model).exists() and not (Path(model) / "config.json").is_file():
        raise ModelNotFound(f"--model {model} is not a model directory (it has no config.json)")
    if checkpoint is not None:
        from r3mem.checkpoint import CONFIG_FILE, WEIGHTS_FILE  # imports torch: only when a checkpoint is named

        root = Path(checkpoint)
        if not (root / CONFIG_FILE).is_file() or not (root / WEIGHTS_FILE).is_file():
            raise CheckpointError(f"--checkpoint {checkpoint} is not a checkpoint directory "
                                  f"(it needs {CONFIG_FILE} and {WEIGHTS_FILE})")


def preflight(args: argparse.Namespace) -> None:
    """Refuse the command's bad paths now, before anything slow; see `PATHS`."""
    inputs, outputs = PATHS.get(getattr(args, "command", ""), ((), ()))
    for name in inputs:
        value = getattr(args, name, None)
        if value is not None and value != "-":
            check_input(value)
    for name in outputs:
        value = getattr(args, name, None)
        if value is not None:
            check_output(value, f"--{name}" if name in ("output", "json") else name)
    check_model_dirs(getattr(args, "model", None), getattr(args, "checkpoint", None))
