"""Deterministic document -> paragraph -> sentence -> entity splitting for r3mem.

r3mem learns to compress text level by level, so it needs the same tree for the same text on
every machine and every run: the splitter is rule based, offline and standard-library only.
Every node keeps character offsets into the original document (``doc[node.start:node.end] ==
node.text``) so that pieces can always be traced back, re-joined, and checked; only
whitespace between siblings is left uncovered. Every piece is bounded in size (long
paragraphs and run-on sentences are cut), because downstream encoders have fixed windows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from r3mem.entities import Entity, EntityExtractor, RuleEntityExtractor

__all__ = [
    "Node",
    "Pair",
    "build_tree",
    "context_query_pairs",
    "split_paragraphs",
    "split_sentences",
    "units",
]

Span = tuple[int, int]

# A blank line (possibly holding spaces, possibly CRLF) or a Unicode paragraph separator.
_PARA_SEP = re.compile(r"\n[^\S\n]*\n\s*|\u2029\s*")
# Sentence-final punctuation plus any closing quotes/brackets that belong to the sentence.
_TERMINATOR = re.compile(r"(?:[.!?؟…]+|[。！？]+)[\"'”’»」』）)\]]*")
_CJK_STOPS = frozenset("。！？")
_OPENING = frozenset("\"'“‘«(「『（[¿¡")
# A new line that starts a list item ("- x", "* x", "• x", "1. x", "2) x").
_BULLET_LINE = re.compile(r"\n(?=[^\S\n]*(?:[-*•‣◦–]|\d{1,3}[.)])[^\S\n]+\S)")
_ABBREVIATIONS = frozenset(
    re.findall(
        r"\S+",
        """mr mrs ms dr st prof sr jr vs etc e.g i.e cf viz vol fig figs capt col gen lt sgt rev
        hon messrs mt mme mlle approx dept est jan feb mar apr jun jul aug sep sept oct nov dec
        al ca""",
    )
)
_DOTTED = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")
_SOFT_CUT = frozenset(";:,")
_CJK_SOFT_CUT = frozenset("，；：、")


@dataclass
class Node:
    """One node of the document tree.

    ``start``/``end`` are offsets into the *document*; ``entities`` is filled only on
    sentence nodes and its offsets are relative to the sentence text (so an entity can be
    checked against the sentence alone, which is what the sentence->entity pairs use).
    """

    level: str
    text: str
    start: int
    end: int
    children: list[Node] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)


@dataclass(frozen=True)
class Pair:
    """A (context, query) training pair: compress ``context``, recover ``query`` from it."""

    context: str
    query: str
    level: str


def _strip_span(text: str, start: int, end: int) -> Span:
    """Shrink ``[start, end)`` so it neither begins nor ends with whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _check_max(max_chars: int) -> None:
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")


# --- sentences ---------------------------------------------------------------------------


def _starts_sentence(ch: str) -> bool:
    """Upper case, digit, opening quote/bracket, or a letter of a script without case."""
    if ch.isupper() or ch.isdigit() or ch in _OPENING:
        return True
    return ch.isalpha() and not ch.islower()


def _is_abbreviation(text: str, dot: int, nxt: int) -> bool:
    """Whether the single '.' at ``dot`` ends an abbreviation, initial or list number.

    ``nxt`` is where the next word starts; "No." only abbreviates before a number ("No. 2").
    """
    word_start = dot
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:dot].lstrip("\"'“‘([")
    if not word:
        return False
    if word.lower() in _ABBREVIATIONS or _DOTTED.match(word):
        return True
    if word.lower() in ("no", "nos") and text[nxt].isdigit():
        return True
    if len(word) == 1 and word.isupper():
        return True  # an initial, as in "J. Austen"
    if not word.isdigit():
        return False
    # "1. First item": a number opening a line is a list marker, not a sentence end.
    i = word_start
    while i > 0 and text[i - 1].isspace() and text[i - 1] != "\n":
        i -= 1
    return i == 0 or text[i - 1] == "\n"


def _boundary_after(text: str, m: re.Match[str]) -> int | None:
    """Offset where a new sentence starts after terminator match ``m``, if it does."""
    end = m.end()
    if end >= len(text):
        return None
    if _CJK_STOPS.intersection(m.group()):
        return end
    if not text[end].isspace():
        return None
    nxt = end
    while nxt < len(text) and text[nxt].isspace():
        nxt += 1
    if nxt == len(text) or not _starts_sentence(text[nxt]):
        return None
    marks = m.group().rstrip("\"'”’»」』）)]")
    if marks == "." and _is_abbreviation(text, m.start(), nxt):
        return None
    return end


def _sentence_boundaries(text: str) -> list[int]:
    """Sorted offsets where sentences may begin (before trimming whitespace)."""
    cuts = {b for m in _TERMINATOR.finditer(text) if (b := _boundary_after(text, m)) is not None}
    cuts.update(m.start() for m in _BULLET_LINE.finditer(text))
    return sorted(cuts)


def _find_cut(text: str, lo: int, hi: int) -> int:
    """Best offset in ``(lo, hi]`` to cut a too-long piece that starts at ``lo``.

    Prefers a clause break (``; : ,``) in the second half of the window, then the last
    whitespace, and only then a hard cut, so pieces stay readable but never exceed the bound.
    """
    half = lo + (hi - lo) // 2
    for i in range(hi - 1, half - 1, -1):
        ch = text[i]
        if ch in _CJK_SOFT_CUT or (
            ch in _SOFT_CUT and (i + 1 == len(text) or text[i + 1].isspace())
        ):
            return i + 1
    if hi < len(text) and text[hi].isspace():
        return hi
    for i in range(hi - 1, lo, -1):
        if text[i].isspace():
            return i
    return hi


def _cap(text: str, start: int, end: int, max_chars: int) -> list[Span]:
    """Split ``[start, end)`` into stripped, non-empty spans of at most ``max_chars``."""
    spans: list[Span] = []
    while True:
        start, end = _strip_span(text, start, end)
        if start >= end:
            return spans
        if end - start <= max_chars:
            spans.append((start, end))
            return spans
        cut = _find_cut(text, start, start + max_chars)
        spans.append(_strip_span(text, start, cut))
        start = cut


def split_sentences(text: str, max_chars: int = 400) -> list[Span]:
    """Split ``text`` into sentence spans ``(start, end)`` of at most ``max_chars`` chars.

    Splits after ``. ! ?`` (with closing quotes/brackets) when whitespace and a plausible
    sentence start follow, after CJK full stops, and before list-item lines. Abbreviations
    (Mr., e.g., U.S.), initials (J.) and decimals (3.5) do not split. Pieces longer than
    ``max_chars`` (run-on sentences, text without punctuation) are cut at clause breaks or
    whitespace so encoders with fixed windows can always take them.
    """
    _check_max(max_chars)
    spans: list[Span] = []
    prev = 0
    for cut in [*_sentence_boundaries(text), len(text)]:
        spans.extend(_cap(text, prev, cut, max_chars))
        prev = cut
    return spans


# --- paragraphs --------------------------------------------------------------------------


def _pack(spans: list[Span], max_chars: int) -> list[Span]:
    """Greedily merge consecutive sentence spans into chunks of at most ``max_chars``."""
    chunks: list[Span] = []
    for start, end in spans:
        if chunks and end - chunks[-1][0] <= max_chars:
            chunks[-1] = (chunks[-1][0], end)
        else:
            chunks.append((start, end))
    return chunks


def split_paragraphs(text: str, max_chars: int = 1200) -> list[Span]:
    """Split ``text`` into paragraph spans at blank lines (LF or CRLF).

    A paragraph longer than ``max_chars`` is re-chunked at sentence boundaries (sentences
    themselves are capped at ``max_chars``), so no span exceeds the bound; whitespace-only
    pieces are dropped.
    """
    _check_max(max_chars)
    spans: list[Span] = []
    prev = 0
    for sep in [*_PARA_SEP.finditer(text), None]:
        stop = len(text) if sep is None else sep.start()
        start, end = _strip_span(text, prev, stop)
        prev = stop if sep is None else sep.end()
        if start >= end:
            continue
        if end - start <= max_chars:
            spans.append((start, end))
            continue
        inner = split_sentences(text[start:end], max_chars=max_chars)
        spans.extend((start + a, start + b) for a, b in _pack(inner, max_chars))
    return spans


# --- tree --------------------------------------------------------------------------------


def build_tree(
    text: str,
    extractor: EntityExtractor | None = None,
    *,
    max_paragraph_chars: int = 1200,
    max_sentence_chars: int = 400,
) -> Node:
    """Build the document tree of ``text``.

    The document node spans the whole input (``text`` verbatim, so the offset invariant holds
    trivially); empty or whitespace-only input gives a document node without children.
    ``extractor`` defaults to :class:`RuleEntityExtractor`.
    """
    extractor = extractor if extractor is not None else RuleEntityExtractor()
    doc = Node("document", text, 0, len(text))
    for p_start, p_end in split_paragraphs(text, max_chars=max_paragraph_chars):
        p_text = text[p_start:p_end]
        para = Node("paragraph", p_text, p_start, p_end)
        for s_start, s_end in split_sentences(p_text, max_chars=max_sentence_chars):
            s_text = p_text[s_start:s_end]
            sent = Node("sentence", s_text, p_start + s_start, p_start + s_end)
            sent.entities = list(extractor.extract(s_text))
            para.children.append(sent)
        doc.children.append(para)
    return doc


def context_query_pairs(tree: Node) -> Iterator[Pair]:
    """Yield training pairs in document order, one level down at a time.

    document->paragraph (level "paragraph"), paragraph->sentence ("sentence") and
    sentence->entities ("entity", query = entity texts joined by "; "; sentences without
    entities are skipped). A one-sentence paragraph yields a pair whose context equals its
    query; it is kept, unmarked, because it is still a valid (trivial) reconstruction
    target and dropping it would make pair counts depend on layout. Filter with
    ``pair.context != pair.query`` if unwanted. The document context is the whole document:
    callers that feed long books should window it themselves.
    """
    for para in tree.children:
        yield Pair(tree.text, para.text, "paragraph")
        for sent in para.children:
            yield Pair(para.text, sent.text, "sentence")
            if sent.entities:
                query = "; ".join(e.text for e in sent.entities)
                yield Pair(sent.text, query, "entity")


def units(tree: Node) -> Iterator[tuple[str, str]]:
    """Yield ``(level, text)`` for every node, pre-order, for reconstruction losses."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node.level, node.text
        stack.extend(reversed(node.children))
