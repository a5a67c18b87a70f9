"""The store commands of `r3mem`, end to end through `main()`, on the tiny model and SQLite."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from r3mem.cli import main


@pytest.fixture
def run(tmp_path, tiny_model_dir, capsys, monkeypatch):
    store = f"sqlite:///{tmp_path / 'cli.sqlite3'}"

    def invoke(*argv: str, stdin: str | None = None):
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(["-q", *argv, "--store", store, "--model", str(tiny_model_dir)]
                    if argv[0] in {"add", "recall", "ask", "update", "chat"}
                    else ["-q", *argv, "--store", store])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def test_add_recall_get_history_delete(run):
    code, out, _ = run("add", "--user", "alice", "--metadata", '{"src": "cli"}', "Alice met Bob in Paris.")
    assert code == 0
    added = json.loads(out)["added"]
    doc = added[0]["id"]
    code, out, _ = run("recall", "--user", "alice", "Paris", "--top-k", "2")
    assert code == 0 and 1 <= len(json.loads(out)) <= 2
    code, out, _ = run("get", "--user", "alice", doc)
    assert code == 0 and json.loads(out)["metadata"] == {"src": "cli"}
    assert run("get", "--user", "bob", doc)[0] == 6  # another user's record does not exist for them
    code, out, _ = run("stats", "--user", "alice")
    assert json.loads(out)["records"] == len(added)
    code, out, _ = run("delete", "--user", "alice", doc)
    assert code == 0 and doc in json.loads(out)["deleted"]
    code, out, _ = run("history", "--user", "alice", doc)
    assert [e["op"] for e in json.loads(out)] == ["add", "delete"]


def test_export_import_through_the_cli(run, tmp_path):
    run("add", "--user", "alice", "A note to keep.")
    archive = str(tmp_path / "alice.r3a")
    code, out, _ = run("export", "--user", "alice", archive)
    assert code == 0 and json.loads(out)["exported"] >= 1
    run("delete", "--user", "alice", "--all")
    code, out, _ = run("import", "--user", "bob", archive)
    assert code == 2  # alice's records cannot be imported into bob's namespace
    code, out, _ = run("import", "--user", "alice", archive)
    assert code == 0 and json.loads(out)["imported"] >= 1


@pytest.mark.parametrize("argv, code", [
    (("add", "--user", "alice", ""), 2),
    (("add", "hello"), 2),
    (("add", "--user", "a b", "hello"), 2),
    (("add", "--user", "alice", "--metadata", "{bad", "hello"), 2),
    (("recall", "--user", "alice", "q", "--top-k", "0"), 2),
    (("recall", "--user", "alice", "q", "--beams", "0"), 2),
    (("ask", "--user", "alice", "q?", "--beams", "17"), 2),
    (("recall", "--user", "alice", "q", "--samples", "-1"), 2),
    (("ask", "--user", "alice", "q?", "--samples", "33"), 2),
    (("recall", "--user", "alice", "q", "--guidance", "-1"), 2),
    (("ask", "--user", "alice", "q?", "--guidance", "nan"), 2),
    (("delete", "--user", "alice"), 2),
])
def test_bad_input_exits_nonzero_with_one_line(run, argv, code):
    got, _, err = run(*argv)
    assert got == code
    assert err.count("\n") == 1 and err.startswith("r3mem: error:")


def test_bad_store_url(tmp_path, capsys):
    assert main(["stats", "--user", "alice", "--store", "mysql://x"]) == 2
    assert "unknown store URL" in capsys.readouterr().err


def test_chat_remembers_across_runs(run):
    code, out, _ = run("chat", "--user", "carol", stdin="My cat is called Whiskers.\n")
    assert code == 0 and out.startswith("assistant> ")
    code, out, _ = run("stats", "--user", "carol")
    assert json.loads(out)["by_level"] == {"turn": 2}  # the user's turn and the reply, stored
    code, _, _ = run("chat", "--user", "carol", stdin="What is my cat called?\n")
    code, out, _ = run("list", "--user", "carol", "--level", "turn")
    texts = [r["text"] for r in json.loads(out)]
    assert texts[0] == "user: My cat is called Whiskers." and len(texts) == 4


@pytest.mark.real_model
def test_chat_with_the_default_model_remembers_across_processes(tmp_path):
    """Two separate `r3mem chat` processes: the second answers from what the first stored."""
    store = f"sqlite:///{tmp_path / 'chat.sqlite3'}"
    argv = [sys.executable, "-m", "r3mem.cli", "-q", "chat", "--user", "carol", "--store", store]
    first = subprocess.run(argv, input="My cat is called Whiskers.\n", capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-1000:]
    second = subprocess.run(argv, input="What is my cat called?\n", capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-1000:]
    assert "Whiskers" in second.stdout
