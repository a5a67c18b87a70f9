"""The store reaches the model only through `R3Mem` methods, never its network or the eval harness."""

import ast
from pathlib import Path

STORE = Path(__file__).resolve().parents[2] / "src" / "r3mem" / "store"


def _attributes(path: Path) -> set[str]:
    return {node.attr for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Attribute)}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}


def test_no_store_module_touches_the_network():
    offenders = sorted(p.name for p in STORE.glob("*.py") if "network" in _attributes(p))
    assert not offenders, f"store modules reaching into R3Mem.network: {offenders}"


def test_no_store_module_imports_the_eval_harness_or_training():
    offenders = sorted(p.name for p in STORE.glob("*.py")
                       if any(m.startswith(("r3mem.eval", "r3mem.train")) for m in _imports(p)))
    assert not offenders, f"store modules importing r3mem.eval or r3mem.train: {offenders}"
