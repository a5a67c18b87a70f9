"""The demo's long conversation, on the tiny model: facts first, a held-out conversation after, questions last."""

import json

from tests.embedders import HashEmbedder

from r3mem.demo_conversation import FACTS, QUESTIONS, run_conversation_demo
from r3mem.retention_data import HELD_OUT_CONVERSATIONS


def test_conversation_demo_stores_every_turn_and_asks_every_question(tiny, tmp_path):
    turns = [{"speaker": "Joanna" if i % 2 else "Nate", "text": f"turn {i} about films and games"} for i in range(12)]
    data = [{"sample_id": HELD_OUT_CONVERSATIONS[0],
             "conversation": {"speaker_a": "Joanna", "speaker_b": "Nate",
                              "session_2": turns[6:], "session_1": turns[:6]}}]
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(data))
    lines: list[str] = []
    figures = run_conversation_demo(tiny, lines.append, locomo=path, embedder=HashEmbedder())
    assert figures is not None and figures["turns"] == len(turns) + len(FACTS)
    assert [a["question"] for a in figures["answers"]] == list(QUESTIONS)
    assert figures["tokens"] > sum(len(tiny.tokenize(f)) for f in FACTS)
    assert any("held out" in line for line in lines), "the screen says the conversation is held out"
    assert sum(line.startswith("Q: ") for line in lines) == len(QUESTIONS)


def test_conversation_demo_says_when_the_data_is_missing(tiny, tmp_path):
    lines: list[str] = []
    assert run_conversation_demo(tiny, lines.append, locomo=tmp_path / "none.json") is None
    assert "skipped" in lines[0] and "R3MEM_DATA" in lines[0]
