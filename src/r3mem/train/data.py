"""Training and validation text from `shared/data`, sampled reproducibly by step.

Every draw uses `numpy.random.default_rng([seed, step, stream])`, so a resumed run
sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from r3mem.errors import InvalidInput
from r3mem.hierarchy import build_tree, context_query_pairs
from r3mem.textio import read_corpus_text


def load_texts(data_dir: Path, val_books: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(train texts, validation texts). Validation: the named books, never trained on."""
    if not data_dir.is_dir():
        raise InvalidInput(f"training data directory not found: {data_dir}")
    train: list[str] = []
    val: list[str] = []
    for book in sorted((data_dir / "books").glob("*.txt")):
        (val if book.name in val_books else train).append(read_corpus_text(book))
    wiki = data_dir / "wikitext" / "wiki.valid.tokens"
    if wiki.is_file():
        train.append(read_corpus_text(wiki))
    squad = data_dir / "qa" / "squad_v1.1_dev_part_a.json"
    if squad.is_file():
        articles = json.loads(squad.read_text())["data"]
        train.append("\n\n".join(p["context"] for a in articles for p in a["paragraphs"]))
    locomo = data_dir / "locomo" / "locomo_dev.json"
    if locomo.is_file():
        for conv in json.loads(locomo.read_text()):
            turns = [t for k, v in conv["conversation"].items() if k.startswith("session_")
                     and isinstance(v, list) for t in v]
            train.append("\n".join(f"{t['speaker']}: {t['text']}" for t in turns))
    if not train or not val:
        raise InvalidInput(f"no training or validation books found under {data_dir}")
    return train, val


@dataclass
class TokenCorpus:
    """Token ids of many texts, concatenated, with sampling of contiguous windows."""

    ids: np.ndarray  # (N,) int32

    @classmethod
    def build(cls, texts: list[str], tokenize: Callable[[str], list[int]]) -> TokenCorpus:
        return cls(np.concatenate([np.asarray(tokenize(t), dtype=np.int32) for t in texts]))

    def windows(self, rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
        starts = rng.integers(0, len(self.ids) - length, size=batch)
        return np.stack([self.ids[s : s + length] for s in starts])  # (B, length)


@dataclass
class HierarchyPairs:
    """(paragraph, sentence, entities) triples drawn from the hierarchy builder."""

    triples: list[tuple[str, str, str]]

    @classmethod
    def build(cls, texts: list[str], max_chars: int = 600, limit_per_text: int = 4000) -> HierarchyPairs:
        triples = []
        for text in texts:
            tree = build_tree(text[:400_000], max_paragraph_chars=max_chars)
            sentence_entities = {p.context: p.query for p in context_query_pairs(tree) if p.level == "entity"}
            # one-sentence paragraphs stay in: their pair is still a valid context -> query
            pairs = [p for p in context_query_pairs(tree) if p.level == "sentence"]
            for pair in pairs[:limit_per_text]:
                triples.append((pair.context, pair.query, sentence_entities.get(pair.query, "")))
        if not triples:
            raise InvalidInput("the training texts yield no paragraph -> sentence pairs")
        return cls(triples)

    def sample(self, rng: np.random.Generator, batch: int) -> list[tuple[str, str, str]]:
        return [self.triples[i] for i in rng.integers(0, len(self.triples), size=batch)]


def step_rng(seed: int, step: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, step, stream])
