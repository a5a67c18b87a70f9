"""Long texts for retention: training streams and the held-out texts the benchmark reads.

The split is fixed here, once, so the context reader's training never sees a text its
figures are judged on. Held out: two validation books of the main run (pg174, Wilde; and
Chesterton's Father Brown), the hardest book of the kit for this LM (Milton's verse), and two
LoCoMo conversations read as one stream of "speaker: text" lines.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from r3mem.errors import InvalidInput
from r3mem.textio import read_corpus_text


def data_dir() -> Path:
    """The data kit: `$R3MEM_DATA`, else `shared/data` beside the repository (the layout CI clones into)."""
    return Path(os.environ.get("R3MEM_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data")


HELD_OUT_BOOKS = ("pg174.txt", "chesterton-brown.txt", "milton-paradise.txt")
HELD_OUT_CONVERSATIONS = ("conv-42", "conv-43")


def conversation_stream(conversation: dict) -> str:
    """A LoCoMo conversation as one text: sessions in order, one "speaker: text" line per turn."""
    sessions = sorted((k for k, v in conversation.items() if k.startswith("session_") and isinstance(v, list)),
                      key=lambda k: int(k.split("_")[1]))
    lines = []
    for key in sessions:
        when = conversation.get(f"{key}_date_time", "")
        lines.append(f"[{when}]" if when else f"[{key}]")
        lines.extend(f"{turn['speaker']}: {turn['text']}" for turn in conversation[key])
    return "\n".join(lines)


def load_streams(data_dir: Path) -> dict[str, tuple[str, bool]]:
    """name -> (text, held_out) for every long text in the kit."""
    if not (data_dir / "books").is_dir():
        raise InvalidInput(f"no books under {data_dir}: pass the shared data directory")
    streams = {book.name: (read_corpus_text(book), book.name in HELD_OUT_BOOKS)
               for book in sorted((data_dir / "books").glob("*.txt"))}
    wiki = data_dir / "wikitext" / "wiki.valid.tokens"
    if wiki.is_file():
        streams[wiki.name] = (read_corpus_text(wiki), False)
    locomo = data_dir / "locomo" / "locomo_dev.json"
    if locomo.is_file():
        for conv in json.loads(locomo.read_text()):
            name = conv["sample_id"]
            streams[name] = (conversation_stream(conv["conversation"]), name in HELD_OUT_CONVERSATIONS)
    return streams


def held_out_split(data_dir: Path, tokenize: Callable[[str], list[int]]
                   ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """(training token streams, held-out name -> token stream)."""
    train, held = [], {}
    for name, (text, held_out) in load_streams(data_dir).items():
        ids = np.asarray(tokenize(text), dtype=np.int32)
        if held_out:
            held[name] = ids
        else:
            train.append(ids)
    return train, held
