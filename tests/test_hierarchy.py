"""Tests for the rule-based document -> paragraph -> sentence -> entity splitter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r3mem.entities import Entity, EntityExtractor, RuleEntityExtractor
from r3mem.hierarchy import (
    Node,
    Pair,
    build_tree,
    context_query_pairs,
    split_paragraphs,
    split_sentences,
    units,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SLICE = 20_000


def _read(rel: str) -> str:
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"shared data file {path} is absent (expected the /work/shared/data kit)")
    # newline="" keeps CRLF as it is on disk, which is what the splitter must cope with.
    with path.open(encoding="utf-8", newline="") as fh:
        return fh.read()


def _locomo_turns() -> list[str]:
    conv = json.loads(_read("locomo/locomo_dev.json"))[0]["conversation"]
    sessions = sorted(
        (k for k in conv if k.startswith("session_") and isinstance(conv[k], list)),
        key=lambda k: int(k.split("_")[1]),
    )
    return [turn["text"] for key in sessions for turn in conv[key]]


def _texts(spans: list[tuple[int, int]], text: str) -> list[str]:
    return [text[a:b] for a, b in spans]


def _check_children(doc: str, node: Node) -> None:
    """Children are ordered, disjoint, inside the parent, separated only by whitespace."""
    cursor = node.start
    for child in node.children:
        assert child.start >= cursor, "children overlap or are out of order"
        assert doc[cursor : child.start].strip() == "", "non-whitespace left uncovered"
        assert child.end <= node.end
        cursor = child.end
    if node.children:
        assert doc[cursor : node.end].strip() == ""


def assert_tree_ok(doc: str, tree: Node, max_para: int = 1200, max_sent: int = 400) -> None:
    """Every invariant the rest of r3mem relies on."""
    assert (tree.level, tree.start, tree.end, tree.text) == ("document", 0, len(doc), doc)
    if doc.strip():
        assert tree.children
    _check_children(doc, tree)
    for para in tree.children:
        assert para.level == "paragraph" and para.entities == []
        assert doc[para.start : para.end] == para.text
        assert para.text == para.text.strip() and 0 < len(para.text) <= max_para
        assert para.children
        _check_children(doc, para)
        for sent in para.children:
            assert sent.level == "sentence" and sent.children == []
            assert doc[sent.start : sent.end] == sent.text
            assert sent.text == sent.text.strip() and 0 < len(sent.text) <= max_sent
            assert [e.start for e in sent.entities] == sorted(e.start for e in sent.entities)
            for ent, nxt in zip(sent.entities, sent.entities[1:], strict=False):
                assert ent.end <= nxt.start
            for ent in sent.entities:
                assert sent.text[ent.start : ent.end] == ent.text


# --- real data ---------------------------------------------------------------------------


def test_emma_lf_paragraphs_and_sentences() -> None:
    doc = _read("books/austen-emma.txt")[:SLICE]
    tree = build_tree(doc)
    assert_tree_ok(doc, tree)
    paras = [p.text for p in tree.children]
    assert paras[:3] == ["[Emma by Jane Austen 1816]", "VOLUME I", "CHAPTER I"]
    assert paras[3].startswith("Emma Woodhouse, handsome, clever, and rich")
    assert paras[3].endswith("with very little to distress or vex her.")
    assert len(tree.children[3].children) == 1
    sixteen = next(p for p in tree.children if p.text.startswith("Sixteen years"))
    first = sixteen.children[0]
    # "Mr. Woodhouse's" must not end a sentence.
    assert first.text.startswith("Sixteen years had Miss Taylor been in Mr. Woodhouse's family")
    assert first.text.endswith("particularly of Emma.")
    assert sixteen.children[1].text == "Between _them_ it was more the intimacy\nof sisters."
    names = {e.text for e in first.entities if e.kind == "name"}
    assert {"Miss Taylor", "Mr. Woodhouse", "Emma"} <= names
    header = tree.children[0].children[0].entities
    assert ("Jane Austen", "name") in {(e.text, e.kind) for e in header}
    assert ("1816", "date") in {(e.text, e.kind) for e in header}


def test_alice_crlf_paragraphs() -> None:
    doc = _read("books/pg11.txt")[:SLICE]
    assert "\r\n\r\n" in doc
    tree = build_tree(doc)
    assert_tree_ok(doc, tree)
    assert len(tree.children) >= 20
    for para in tree.children:
        assert "\r\n\r\n" not in para.text and "\n\r\n" not in para.text
    first = tree.children[0]
    assert first.text.startswith("Alice was beginning to get very tired")
    assert first.text.endswith("conversations?'")
    assert split_paragraphs("a b\r\n\r\nc d\r\n \r\n\r\ne") == [(0, 3), (7, 10), (17, 18)]


def test_wikitext_headings_are_paragraphs() -> None:
    doc = _read("wikitext/wiki.valid.tokens")[:SLICE]
    tree = build_tree(doc)
    assert_tree_ok(doc, tree)
    paras = [p.text for p in tree.children]
    assert paras[0] == "= Homarus gammarus ="
    assert "= = Description = =" in paras
    sents = [s.text for s in tree.children[1].children]
    # "H. americanus" is an initial, not a sentence end; " ." tokens still split.
    assert sents[1] == "It is closely related to the American lobster , H. americanus ."
    assert sents[2].startswith("It may grow to a length of 60 cm")
    ents = {(e.text, e.kind) for e in tree.children[1].children[2].entities}
    assert {("60 cm", "quantity"), ("6 kilograms", "quantity")} <= ents


def test_locomo_turn_entities() -> None:
    turns = _locomo_turns()
    ex = RuleEntityExtractor()
    by_text = {t: {(e.text, e.kind) for e in ex.extract(t)} for t in turns}
    assert by_text["Hey Mel! Good to see you! How have you been?"] == {("Mel", "name")}
    five = "5 years already! Time flies- feels like just yesterday I put this dress on! Thanks, "
    assert {("5 years", "quantity"), ("yesterday", "date"), ("Caroline", "name")} <= by_text[
        five + "Caroline!"
    ]
    bowl = next(t for t in turns if t.startswith("Yep, Melanie! I've got some other stuff"))
    assert {("Melanie", "name"), ("18th", "number"), ("ten years", "quantity")} <= by_text[bowl]
    conv = json.loads(_read("locomo/locomo_dev.json"))[0]["conversation"]
    stamp = conv["session_1_date_time"]
    assert [(e.text, e.kind) for e in ex.extract(stamp)] == [(stamp, "date")]
    doc = "\n\n".join(turns[:200])
    tree = build_tree(doc)
    assert_tree_ok(doc, tree)
    assert [s.text for s in tree.children[0].children] == [
        "Hey Mel!",
        "Good to see you!",
        "How have you been?",
    ]


def test_squad_context_entities() -> None:
    squad = json.loads(_read("qa/squad_v1.1_dev_part_a.json"))
    context = squad["data"][0]["paragraphs"][0]["context"]
    tree = build_tree(context)
    assert_tree_ok(context, tree)
    sents = tree.children[0].children
    assert sents[0].text.startswith("Super Bowl 50 was an American football game")
    found = {(e.text, e.kind) for s in sents for e in s.entities}
    expected = {
        ("Super Bowl 50", "name"),
        ("Denver Broncos", "name"),
        ("Carolina Panthers", "name"),
        ("February 7, 2016", "date"),
        ("Santa Clara", "name"),
        ("2015", "date"),
    }
    assert expected <= found
    answers = {a["text"] for q in squad["data"][0]["paragraphs"][0]["qas"] for a in q["answers"]}
    assert {"Denver Broncos", "Carolina Panthers", "Santa Clara, California"} & answers


# --- hand-written messy input ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Mr. Knightley met Dr. Watson in the U.S. yesterday. They talked.",
            ["Mr. Knightley met Dr. Watson in the U.S. yesterday.", "They talked."],
        ),
        (
            "It costs 3.5 dollars, e.g. a coffee. Then J. Austen left... and came back!",
            ["It costs 3.5 dollars, e.g. a coffee.", "Then J. Austen left... and came back!"],
        ),
        (
            '"Well," said he, "I think so." She nodded. "Really?" she asked.',
            ['"Well," said he, "I think so."', "She nodded.", '"Really?" she asked.'],
        ),
        (
            "Shopping list:\n- eggs\n- milk\n1. First step\n2. Second step",
            ["Shopping list:", "- eggs", "- milk", "1. First step", "2. Second step"],
        ),
        ("He flew No. 2 Squadron. It was 1944.", ["He flew No. 2 Squadron.", "It was 1944."]),
        ("我今天很好。你呢？谢谢！", ["我今天很好。", "你呢？", "谢谢！"]),
        ("今日は晴れです。明日は雨です。", ["今日は晴れです。", "明日は雨です。"]),
        ("Привет. Как дела? Хорошо!", ["Привет.", "Как дела?", "Хорошо!"]),
        ("مرحبا بك. كيف حالك؟ أنا بخير.", ["مرحبا بك.", "كيف حالك؟", "أنا بخير."]),
        ("i saw it. then it left", ["i saw it. then it left"]),
    ],
)
def test_sentence_rules(text: str, expected: list[str]) -> None:
    assert _texts(split_sentences(text), text) == expected


def test_huge_sentence_is_cut_at_clause_breaks() -> None:
    clause = "the committee reviewed the proposal in detail, "
    text = "Then " + clause * 110 + "and finally it agreed."
    assert len(text) > 5000
    spans = split_sentences(text, max_chars=400)
    pieces = _texts(spans, text)
    assert len(pieces) >= len(text) // 400
    assert all(len(p) <= 400 for p in pieces)
    assert all(p.endswith(",") for p in pieces[:-1])  # cut after a comma, not mid-word
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_no_punctuation_is_bounded() -> None:
    words = " ".join(f"word{i}" for i in range(2000))
    pieces = _texts(split_sentences(words, max_chars=100), words)
    assert all(len(p) <= 100 for p in pieces) and len(pieces) > 100
    assert " ".join(pieces) == words  # whitespace cuts lose nothing but the cut space
    blob = "x" * 1000  # no whitespace at all: hard cuts
    assert split_sentences(blob, max_chars=300) == [(0, 300), (300, 600), (600, 900), (900, 1000)]
    cjk = "中" * 950
    assert [b - a for a, b in split_sentences(cjk, max_chars=400)] == [400, 400, 150]


def test_long_paragraph_is_chunked_at_sentences() -> None:
    sentence = "This sentence has exactly fifty characters in it. "
    text = (sentence * 60).strip()
    spans = split_paragraphs(text, max_chars=1200)
    assert len(spans) == 3
    for a, b in spans:
        assert b - a <= 1200
        assert text[a:b].endswith("in it.") and text[a:b].startswith("This")


@pytest.mark.parametrize("text", ["", " ", "\n\n\n", "\r\n\r\n \t \r\n", "\u2029 \u2029"])
def test_empty_and_whitespace(text: str) -> None:
    tree = build_tree(text)
    assert tree.children == [] and tree.text == text
    assert list(context_query_pairs(tree)) == []
    assert list(units(tree)) == [("document", text)]
    assert split_sentences(text) == [] and split_paragraphs(text) == []


def test_bad_limits_raise() -> None:
    with pytest.raises(ValueError):
        split_sentences("abc", max_chars=0)
    with pytest.raises(ValueError):
        split_paragraphs("abc", max_chars=-1)


# --- entities ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It was 8:56 pm on 20 July, 2023.", [("8:56 pm on 20 July, 2023", "date")]),
        (
            "We met on May 7, 2023 and 2023-05-07.",
            [("May 7, 2023", "date"), ("2023-05-07", "date")],
        ),
        ("It cost $3.2 million, 40% more.", [("$3.2 million", "quantity"), ("40%", "quantity")]),
        ("A 5 km run with 3,000 people.", [("5 km", "quantity"), ("3,000", "number")]),
        (
            "She waited 12 years and seventy days.",
            [("12 years", "quantity"), ("seventy days", "quantity")],
        ),
        (
            "The Bank of England and Mr. Knightley.",
            [("Bank of England", "name"), ("Mr. Knightley", "name")],
        ),
        ("The cat sat. It was 4.5 long.", [("4.5", "number")]),
        ("He said I may go. They left.", []),
    ],
)
def test_rule_entities(text: str, expected: list[tuple[str, str]]) -> None:
    ents = RuleEntityExtractor().extract(text)
    assert [(e.text, e.kind) for e in ents] == expected
    assert all(text[e.start : e.end] == e.text for e in ents)


def test_custom_extractor_is_pluggable() -> None:
    class Upper:
        def extract(self, text: str) -> list[Entity]:
            return [Entity(text[:1], "name", 0, 1)]

    assert isinstance(Upper(), EntityExtractor)
    tree = build_tree("Hello there. Bye now.", extractor=Upper())
    assert [[e.text for e in s.entities] for s in tree.children[0].children] == [["H"], ["B"]]


# --- pairs, units, determinism -----------------------------------------------------------


def test_pairs_and_units_are_well_formed() -> None:
    doc = "Jane Austen wrote Emma in 1816.\n\nIt was long. Very long!\n\nno entities here"
    tree = build_tree(doc)
    pairs = list(context_query_pairs(tree))
    assert pairs == [
        Pair(doc, "Jane Austen wrote Emma in 1816.", "paragraph"),
        Pair("Jane Austen wrote Emma in 1816.", "Jane Austen wrote Emma in 1816.", "sentence"),
        Pair("Jane Austen wrote Emma in 1816.", "Jane Austen; Emma; 1816", "entity"),
        Pair(doc, "It was long. Very long!", "paragraph"),
        Pair("It was long. Very long!", "It was long.", "sentence"),
        Pair("It was long. Very long!", "Very long!", "sentence"),
        Pair(doc, "no entities here", "paragraph"),
        Pair("no entities here", "no entities here", "sentence"),
    ]
    assert list(units(tree)) == [
        ("document", doc),
        ("paragraph", "Jane Austen wrote Emma in 1816."),
        ("sentence", "Jane Austen wrote Emma in 1816."),
        ("paragraph", "It was long. Very long!"),
        ("sentence", "It was long."),
        ("sentence", "Very long!"),
        ("paragraph", "no entities here"),
        ("sentence", "no entities here"),
    ]


def test_pairs_on_real_text_and_determinism() -> None:
    doc = _read("books/pg1661.txt")[:SLICE]
    tree = build_tree(doc)
    assert_tree_ok(doc, tree)
    assert build_tree(doc) == tree  # same input, same tree
    pairs = list(context_query_pairs(tree))
    assert pairs == list(context_query_pairs(build_tree(doc)))
    sents = [s for p in tree.children for s in p.children]
    n_ent = sum(1 for s in sents if s.entities)
    assert len(pairs) == len(tree.children) + len(sents) + n_ent
    for pair in pairs:
        assert pair.level in ("paragraph", "sentence", "entity") and pair.query
        if pair.level == "entity":
            assert all(part in pair.context for part in pair.query.split("; "))
        else:
            assert pair.query in pair.context
    assert len(list(units(tree))) == 1 + len(tree.children) + len(sents)
    dr = next(s for s in sents if "Dr. Watson" in s.text)
    assert "Dr. Watson" in {e.text for e in dr.entities}


# --- property ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab .!?,;:\n\r\t\"'A。J3")) | st.characters()))
def test_property_any_text(text: str) -> None:
    tree = build_tree(text, max_paragraph_chars=60, max_sentence_chars=20)
    assert_tree_ok(text, tree, max_para=60, max_sent=20)
    assert build_tree(text, max_paragraph_chars=60, max_sentence_chars=20) == tree


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_property_default_limits(text: str) -> None:
    tree = build_tree(text)
    assert_tree_ok(text, tree)
    for pair in context_query_pairs(tree):
        assert pair.query and pair.level in ("paragraph", "sentence", "entity")
