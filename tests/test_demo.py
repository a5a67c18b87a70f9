"""The demo on the tiny model: held-out text said so on screen, the decoding printed, each segment shown as it comes."""

from __future__ import annotations

import pytest

from r3mem.decode.options import Decoding
from r3mem.demo import DEMO_BEAMS, DEMO_DECODING, HELD_OUT_NOTE, demo_passage, run_demo
from r3mem.errors import InvalidInput
from r3mem.train.config import TrainConfig

TEXT = "The consulting-rooms of Dr Orion Hood lay along the sea-front at Scarborough. "


def test_demo_passage_comes_from_a_validation_book(data_dir):
    # the claim the demo prints must stay true: the passage is verbatim from a book training never reads
    assert "chesterton-brown.txt" in TrainConfig().val_books and "chesterton-brown.txt" in HELD_OUT_NOTE
    assert demo_passage().strip() in (data_dir / "books" / "chesterton-brown.txt").read_text()


def test_demo_reports_progress_per_segment_and_its_decoding(tiny):
    lines: list[str] = []
    figures = run_demo(tiny, ratio=4, say=lines.append, decoding=Decoding(beams=2), text=TEXT)
    n = figures["segments"]
    assert n > 1 and figures["beams"] == 2
    assert any(line.startswith("decoding: 2-beam search") for line in lines)
    # one progress line before each segment's expansion, in order, then that segment's text
    progress = [line.strip() for line in lines if "] expanding segment" in line]
    assert progress == [line.strip() for line in progress] and len(progress) == n
    assert [p.split("]")[0] for p in progress] == [f"[{i + 1}/{n}" for i in range(n)]
    assert lines.index(next(x for x in lines if x.startswith("-- segment 0"))) < lines.index(
        next(x for x in lines if "[2/" in x))
    assert f"{figures['segments_verified']} of {n} segment(s) verified exact" in lines[-1]
    assert any("untrained" in line for line in lines)  # the tiny model has no checkpoint


def test_demo_says_the_text_is_held_out(tiny, monkeypatch):
    monkeypatch.setattr("r3mem.demo.demo_passage", lambda: TEXT)  # the passage itself: the test above
    lines: list[str] = []
    figures = run_demo(tiny, say=lines.append, decoding=Decoding(beams=1))
    assert HELD_OUT_NOTE in lines and any("The Wisdom of Father Brown" in line for line in lines)
    assert figures["source_bytes_utf8"] == len(TEXT.encode())
    assert DEMO_BEAMS < 16  # fewer than the library's default, so it ends in minutes on a CPU
    assert Decoding(beams=DEMO_BEAMS) == DEMO_DECODING  # otherwise the library's decoding


def test_demo_refuses_anything_but_a_decoding_before_work(tiny):
    lines: list[str] = []
    with pytest.raises(InvalidInput, match="decoding must be a Decoding"):
        run_demo(tiny, say=lines.append, decoding=0, text=TEXT)  # type: ignore[arg-type]
    assert lines == []
