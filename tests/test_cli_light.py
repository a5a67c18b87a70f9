"""Commands that need no model answer at once: they never import torch (or load a model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# runs main() in a fresh interpreter, then prints which heavy modules it imported
PROBE = """
import sys, io, contextlib
from r3mem.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(__import__("json").dumps({"code": code, "out": out.getvalue(),
      "heavy": sorted(m for m in ("torch", "transformers", "r3mem.api") if m in sys.modules)}))
"""


def probe(*argv: str, env: dict | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("argv", [("--help",), ("list", "--help"), ("eval", "--help")])
def test_help_imports_no_torch(argv):
    got = probe(*argv)
    assert got["code"] == 0 and got["heavy"] == [] and "usage" in got["out"]


def test_store_commands_without_a_model_import_no_torch(tmp_path):
    store = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    for argv in (("list",), ("stats",), ("export", str(tmp_path / "a.tar.gz")), ("forget", "--yes")):
        got = probe(*argv, "--user", "alice", "--store", store)
        assert got["code"] == 0 and got["heavy"] == [], argv
    for argv in (("get", "nope"), ("history", "nope")):  # an error, too, answers without the model
        got = probe(*argv, "--user", "alice", "--store", store)
        assert got["code"] == 6 and got["heavy"] == [], argv
