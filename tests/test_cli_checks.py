"""The command line refuses bad paths and model directories before any model loads, in one line."""

from __future__ import annotations

import pytest

from r3mem import cli
from r3mem.base_model import load_base_model
from r3mem.errors import ModelNotFound


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test: every refusal below must come before one."""

    def refuse(_args):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(cli, "_load", refuse)


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return code, err


def test_bad_paths_are_refused_before_the_model_loads(tmp_path, capsys, no_model):
    text = tmp_path / "passage.txt"
    text.write_text("A passage to compress.")
    folder = tmp_path / "somedir"
    folder.mkdir()
    empty = tmp_path / "emptydir"
    empty.mkdir()
    cases = [  # (argv, exit code, words the line must hold)
        (["compress", str(text), "-o", str(folder)], 2, "is a directory"),
        (["compress", str(folder), "-o", str(tmp_path / "a.r3m")], 2, "is a directory"),
        (["compress", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "a.r3m")], 2, "no such file"),
        (["compress", str(text), "-o", str(tmp_path / "nowhere" / "a.r3m")], 2, "does not exist"),
        (["compress", str(text), "-o", str(tmp_path / "a.r3m"), "--model", str(empty)], 3, "not a model directory"),
        (["compress", str(text), "-o", str(tmp_path / "a.r3m"), "--checkpoint", str(empty)], 4,
         "not a checkpoint directory"),
        (["expand", str(folder)], 4, "is a directory"),
        (["expand", str(text), "-o", str(folder)], 2, "is a directory"),
        (["info", str(folder)], 4, "is a directory"),
        (["import", "--user", "alice", "--store", f"sqlite:///{tmp_path / 's.sqlite3'}", str(folder)], 2,
         "is a directory"),
        (["export", "--user", "alice", "--store", f"sqlite:///{tmp_path / 's.sqlite3'}", str(folder)], 2,
         "is a directory"),
    ]
    for argv, code, words in cases:
        got, err = _run(capsys, *argv)
        assert (got, words in err) == (code, True), (argv, err)
    assert not (tmp_path / "a.r3m").exists()


def test_unexpected_errors_are_one_line(monkeypatch, capsys, tmp_path):
    text = tmp_path / "passage.txt"
    text.write_text("A passage to compress.")

    def broken(_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "_load", broken)
    code, err = _run(capsys, "compress", str(text), "-o", str(tmp_path / "a.r3m"))
    assert code == 1 and "No space left on device" in err

    def bug(_args):
        raise TypeError("something\nspanning lines")

    monkeypatch.setattr(cli, "_load", bug)
    code, err = _run(capsys, "compress", str(text), "-o", str(tmp_path / "a.r3m"))
    assert code == 1 and "internal error: TypeError: something spanning lines" in err


def test_a_directory_without_a_model_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFound, match="holds no model"):
        load_base_model(str(tmp_path))
