"""The decoding flags become one `Decoding` before anything loads, and that value is what the
decoder (`r3mem expand`) or the store (`r3mem recall`, `r3mem ask`) receives. In-process, on the tiny model."""

from __future__ import annotations

import pytest
from tests.conftest import CORPUS

import r3mem.api
from r3mem import cli, store_cli
from r3mem.decode.options import DEFAULT_DECODING, Decoding
from r3mem.store import Answer


@pytest.fixture
def decoder(monkeypatch):
    """The decodings the decoder is handed, in order (it still decodes)."""
    seen: list[Decoding] = []
    real = r3mem.api.expand_batch
    monkeypatch.setattr(r3mem.api, "expand_batch", lambda net, snaps, counts, decoding, *rest: seen.append(decoding)
                        or real(net, snaps, counts, decoding, *rest))
    return seen


def test_expand_flags_reach_the_decoder_as_one_value(tiny, tmp_path, monkeypatch, decoder):
    path = tmp_path / "m.r3m"
    tiny.compress(CORPUS[:80], ratio=4).save(path)
    monkeypatch.setattr(cli, "_load", lambda args: tiny)
    out = tmp_path / "out.txt"
    assert cli.main(["-q", "expand", str(path), "--beams", "2", "--samples", "1", "--guidance", "1.5",
                     "-o", str(out)]) == 0
    assert decoder and set(decoder) == {Decoding(beams=2, samples=1, guidance=1.5)}
    decoder.clear()
    assert cli.main(["-q", "expand", str(path), "-o", str(out)]) == 0
    assert decoder and set(decoder) == {DEFAULT_DECODING}


def test_a_bad_flag_is_refused_before_the_model_loads(tmp_path, monkeypatch, capsys):
    loads = []
    monkeypatch.setattr(cli, "_load", lambda args: loads.append(args))
    assert cli.main(["expand", str(tmp_path / "absent.r3m"), "--samples", "99"]) == 2
    assert "samples must be an integer from 0 to 32" in capsys.readouterr().err and loads == []


@pytest.mark.parametrize("command", [["recall", "tea"], ["ask", "tea?"]])
def test_store_commands_hand_the_store_one_value(monkeypatch, capsys, command):
    seen = []

    class Store:
        def recall(self, query, namespace, **kw):
            seen.append(kw["decoding"])
            return []

        def ask(self, question, namespace, **kw):
            seen.append(kw["decoding"])
            return Answer(None, True, 0.0, [], [])

    monkeypatch.setattr(store_cli.StoreCommands, "_store", lambda self, args, local_only=None: (Store(), None))
    assert cli.main([command[0], "--user", "alice", command[1], "--beams", "3", "--samples", "2",
                     "--guidance", "0"]) == 0
    assert seen == [Decoding(beams=3, samples=2, guidance=0.0)]
