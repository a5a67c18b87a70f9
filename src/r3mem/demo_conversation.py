"""The demo's second act: facts told at the start of a long conversation, answered at its end.

A user tells the assistant three facts, then a long conversation follows (a held-out LoCoMo
conversation, about 20,000 tokens), every turn stored as it comes. At the end the three facts
lie tens of thousands of tokens back, far outside any raw window a small LM reads; the store's
default recall finds them and the grounded `ask` answers from them, naming the record and how
far back it was said, and a question nothing stored answers is abstained on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

from r3mem.api import R3Mem
from r3mem.retention_data import HELD_OUT_CONVERSATIONS, data_dir
from r3mem.store.embedder import Embedder
from r3mem.store.memory_store import MemoryStore
from r3mem.store.namespace import Namespace
from r3mem.store.sqlite import SQLiteBackend

FACTS = ("My dog is called Rex.", "I live in Lyon.", "My brother is called Tom.")
QUESTIONS = ("What is my dog called?", "Where do I live?", "What is my brother called?",
             "What is my cat called?")  # the last: nothing told answers it
WINDOW = 512  # the raw window a plain LM of this size would read


def conversation_turns(path: Path, conversation: str = HELD_OUT_CONVERSATIONS[0]) -> list[str]:
    """"Speaker: text" per turn of one LoCoMo conversation, sessions in order."""
    found = [c for c in json.loads(path.read_text()) if c.get("sample_id") == conversation]
    if not found:
        raise FileNotFoundError(f"{path} has no conversation {conversation}")
    conv = found[0]["conversation"]
    sessions = sorted((k for k, v in conv.items() if k.startswith("session_") and isinstance(v, list)),
                      key=lambda k: int(k.split("_")[1]))
    return [f"{turn['speaker']}: {turn['text']}" for key in sessions for turn in conv[key]]


def run_conversation_demo(r3: R3Mem, say: Callable[[str], None], locomo: Path | None = None,
                          embedder: Embedder | None = None) -> dict | None:
    """Store FACTS, then a held-out conversation, then ask QUESTIONS; None when the data is missing.

    `embedder` replaces the store's packaged MiniLM (tests)."""
    locomo = locomo or data_dir() / "locomo" / "locomo_dev.json"
    if not locomo.is_file():
        say(f"\n(second part skipped: no LoCoMo data at {locomo}; set R3MEM_DATA to the data kit)")
        return None
    turns = conversation_turns(locomo)
    say(f"\n=== a long conversation: three facts told first, then {len(turns)} turns of LoCoMo "
        f"{HELD_OUT_CONVERSATIONS[0]} (held out of every training run) ===")
    user = Namespace(user="demo")
    with TemporaryDirectory() as tmp:
        store = MemoryStore(SQLiteBackend(str(Path(tmp) / "demo.db")), model=r3, embedder=embedder)
        try:
            return _converse(store, r3, user, turns, say)
        finally:
            store.close()


def _converse(store: MemoryStore, r3: R3Mem, user: Namespace, turns: list[str],
              say: Callable[[str], None]) -> dict:
    said_at: dict[str, int] = {}  # record id -> tokens told before it
    told = 0
    t0 = time.perf_counter()
    for fact in FACTS:
        for record in store.add(user, text=fact, levels=("document",)):
            said_at[record.id] = told
        told += len(r3.tokenize(fact))
    add_ms = []
    for i, turn in enumerate(turns):
        started = time.perf_counter()
        store.add(user, text=turn, levels=("document",))
        add_ms.append((time.perf_counter() - started) * 1000)
        told += len(r3.tokenize(turn))
        if (i + 1) % 100 == 0 or i + 1 == len(turns):
            say(f"  stored {i + 1}/{len(turns)} turns, {told:,} tokens ({time.perf_counter() - t0:.0f} s)")
    store.flush()
    store_s = time.perf_counter() - t0
    add_ms.sort()
    say(f"{told:,} tokens stored in {store_s:.1f} s (add p50 {add_ms[len(add_ms) // 2]:.0f} ms; memories "
        f"written in batches); a plain LM reading its last {WINDOW} tokens no longer sees the facts.")
    answers = []
    for question in QUESTIONS:
        started = time.perf_counter()
        got = store.ask(question, user)
        took = time.perf_counter() - started
        if got.abstained or not got.sources:
            say(f"Q: {question}\n   -> nothing remembered answers this (confidence {got.confidence:.2f}; {took:.1f} s)")
        else:
            source = got.sources[0]
            back = told - said_at.get(source.id, told)
            say(f"Q: {question}\n   -> {got.answer}   (confidence {got.confidence:.2f}; from {source.text!r}, "
                f"told {back:,} tokens ago; {took:.1f} s)")
        answers.append({"question": question, "answer": got.answer, "abstained": got.abstained,
                        "confidence": got.confidence})
    return {"tokens": told, "turns": len(turns) + len(FACTS), "store_s": store_s, "answers": answers}
