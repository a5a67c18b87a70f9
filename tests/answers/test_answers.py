"""Grounded answers: spans found in the sources, abstention when nothing supports, chat phrasing."""

from __future__ import annotations

import datetime

import pytest
import torch

from r3mem.answers import Evidence, answer_question, describe, grounded, phrasing
from r3mem.answers.confidence import FEATURES, Calibration, load_calibration, question_coverage
from r3mem.answers.constrained import SourceVocabulary, allowed_tokens, extract
from r3mem.answers.grounding import anchor, ground
from r3mem.store import MemoryStore, Namespace
from r3mem.store.location import open_backend

N = len(FEATURES)
ALWAYS = Calibration(FEATURES, (0.0,) * N, (1.0,) * N, (0.0,) * N, 0.0, 0.0)
NEVER = Calibration(FEATURES, (0.0,) * N, (1.0,) * N, (0.0,) * N, 0.0, 1.0)
FACTS = ["My dog is called Rex.", "I live in Lyon."]


def test_ground_finds_the_verbatim_span_case_insensitively():
    where = ground("rex", FACTS, "What is my dog called?")
    assert where is not None and FACTS[where.source][where.start : where.end] == "Rex"


def test_ground_drops_the_question_words_a_reader_restates():
    where = ground("My dog is called Rex.", FACTS, "What is my dog called?")
    assert where is not None and FACTS[where.source][where.start : where.end] == "Rex"


def test_ground_takes_the_shortest_window_holding_the_content_words():
    texts = ["Lyon is far.", "In Lyon, then in 2019, we moved", "By 2019 Lyon had won"]
    where = ground("Lyon 2019", texts)
    assert where is not None and (where.source, texts[where.source][where.start : where.end]) == (2, "2019 Lyon")


@pytest.mark.parametrize("answer", ["Luna", "the", "", "Rexford"])
def test_ground_refuses_what_no_source_holds(answer):
    assert ground(answer, FACTS, "What is my dog called?") is None


def test_anchor_keeps_what_a_source_says_of_an_embroidered_answer():
    where = anchor("Rex is a famous British dog named Lionel.", FACTS, "What is my dog called?")
    assert where is not None and FACTS[where.source][where.start : where.end] == "Rex"


def test_anchor_prefers_the_source_holding_more_of_the_answer():
    texts = ["We went to Paris.", "In May we went by train to Paris with Anna."]
    where = anchor("She took the train to Paris in May", texts, "How did she travel?")  # "took" is its own
    assert where is not None and texts[where.source][where.start : where.end] == "May we went by train to Paris"


@pytest.mark.parametrize("answer", ["Luna is a German Shepherd", "the", ""])
def test_anchor_finds_nothing_when_no_source_holds_a_new_word(answer):
    assert anchor(answer, FACTS, "What is my dog called?") is None


@pytest.fixture
def no_free_answer(monkeypatch):
    monkeypatch.setattr(grounded, "generate", lambda r3, texts, question: "")


def test_source_vocabulary_masks_every_other_token(tiny):
    allowed = allowed_tokens(tiny, FACTS)
    scores = torch.zeros(1, len(tiny.tokenizer))
    masked = SourceVocabulary(allowed)(torch.zeros(1, 1, dtype=torch.long), scores)
    assert set(torch.isfinite(masked[0]).nonzero()[:, 0].tolist()) == allowed
    assert tiny.tokenizer.eos_token_id in allowed and set(tiny.tokenize(" Rex")) <= allowed


def test_extraction_emits_only_source_tokens(tiny):
    answer = extract(tiny, FACTS, "What is my dog called?")
    allowed = allowed_tokens(tiny, FACTS)
    assert set(tiny.tokenizer.convert_tokens_to_ids(tiny.tokenizer.tokenize(answer))) <= allowed


def test_answer_carries_its_source_and_span(tiny, monkeypatch, no_free_answer):
    monkeypatch.setattr(grounded, "extract", lambda r3, texts, question: "My dog is called Rex.")
    evidence = [Evidence("r1", FACTS[1], 0.2), Evidence("r2", FACTS[0], 0.9)]
    got = answer_question(tiny, "What is my dog called?", evidence, ALWAYS)
    assert (got.answer, got.abstained, got.as_dict()["sources"]) == ("Rex", False, [
        {"id": "r2", "text": FACTS[0], "span": [17, 20]}])
    assert set(got.features) == set(FEATURES)


def test_abstains_when_nothing_supports_and_names_the_closest(tiny, monkeypatch, no_free_answer):
    monkeypatch.setattr(grounded, "extract", lambda r3, texts, question: "Luna")
    evidence = [Evidence("r1", FACTS[0], 0.5)]
    got = answer_question(tiny, "What is my cat called?", evidence, ALWAYS)
    assert got.answer is None and got.abstained and got.sources[0].id == "r1" and got.sources[0].span is None
    assert "Nothing remembered answers this" in describe(got) and "r1" in describe(got)
    assert answer_question(tiny, "What is my cat called?", [], ALWAYS).abstained


def test_abstains_below_the_threshold(tiny, monkeypatch, no_free_answer):
    monkeypatch.setattr(grounded, "extract", lambda r3, texts, question: "Rex")
    got = answer_question(tiny, "What is my dog called?", [Evidence("r1", FACTS[0], 0.9)], NEVER)
    assert got.abstained and got.answer is None and got.confidence < 1


def test_packaged_calibration_is_valid_and_bounded():
    calibration = load_calibration()
    assert calibration.features == FEATURES and 0 < calibration.threshold < 1
    worst = dict.fromkeys(FEATURES, -20.0)
    assert 0 <= calibration.confidence(worst) <= 1
    with pytest.raises(ValueError, match="weights"):
        Calibration(FEATURES, (0.0,) * N, (1.0,) * N, (0.0,) * (N - 1), 0.0, 0.5)


def test_question_coverage_counts_the_names_a_record_lacks():
    question = "What did Caroline realize after her charity race?"
    assert question_coverage(question, "[1 May] Melanie: I realized, after the race, ...") == (0.6, 0.0)
    assert question_coverage(question, "[1 May] Caroline: after the charity race I realized it")[1] == 1.0


def test_chat_phrasing_speaks_to_the_user():
    assert phrasing.second_person("My dog is called Rex.") == "Your dog is called Rex."
    assert phrasing.second_person("I live in Lyon; I was born in Nice.") == "You live in Lyon; you were born in Nice."
    assert phrasing.is_question("what is my dog called") and not phrasing.is_question("My dog is called Rex.")
    answered = grounded.GroundedAnswer("Rex", False, 0.9, [grounded.Source("r", "user: My dog is called Rex. Bye.",
                                                                             (23, 26))])
    assert phrasing.reply(answered) == "Your dog is called Rex."
    abstained = grounded.GroundedAnswer(None, True, 0.1, [grounded.Source("r", "user: My cat is called Luna.", None)])
    assert phrasing.reply(abstained).startswith("I don't remember")


def test_store_ask_returns_the_public_shape(store):
    alice = Namespace(user="alice")
    store.add(alice, text=FACTS[0])
    got = store.ask("What is my dog called?", alice).as_dict()
    assert set(got) == {"answer", "abstained", "confidence", "sources"} and got["abstained"] == (got["answer"] is None)


def test_chat_acknowledges_a_statement_and_stores_both_turns(store):
    carol = Namespace(user="carol")
    assert store.chat("My cat is called Whiskers.", carol).answer == phrasing.ACKNOWLEDGE
    assert [t.text for t in store.list(carol, level="turn")] == ["user: My cat is called Whiskers.",
                                                                  f"assistant: {phrasing.ACKNOWLEDGE}"]


@pytest.mark.real_model
def test_the_readme_example_with_the_default_model(real, tmp_path):
    """Three stored facts, three questions: Rex, an abstention for Bob, and Lyon; then a date."""
    alice, bob = Namespace(user="alice"), Namespace(user="bob")
    store = MemoryStore(open_backend(f"sqlite:///{tmp_path / 'readme.sqlite3'}"), real)
    store.add(alice, text="My dog is called Rex.")
    store.add(bob, text="My cat is called Luna.")
    store.add(alice, text="I live in Lyon.")
    assert store.ask("What is my dog called?", alice).answer == "Rex"
    bobs = store.ask("What is my dog called?", bob)
    assert bobs.abstained and bobs.answer is None and bobs.sources[0].text == "My cat is called Luna."
    assert store.ask("Where do I live?", alice).answer == "Lyon"
    store.add(alice, text="I went to the dentist yesterday.")
    yesterday = datetime.date.today() - datetime.timedelta(days=1)
    assert store.ask("When did I go to the dentist?", alice).answer == f"{yesterday.day} {yesterday:%B %Y}"
    assert store.chat("What is my dog called?", alice).answer == "Your dog is called Rex."
    store.close()


def test_a_free_answer_is_answered_as_the_span_that_supports_it(monkeypatch):
    """The extraction copies a distractor; the free reader names the right turn and embroiders it. The
    answer is the supporting span, never the reader's own words."""
    texts = ["Nate: Sounds like you made your living room comfy!", "I live in Lyon."]
    monkeypatch.setattr(grounded, "extract", lambda r3, group, question: "living room comfy")
    monkeypatch.setattr(grounded, "generate", lambda r3, group, question: "You live in beautiful Lyon.")
    monkeypatch.setattr(grounded, "likelihood", lambda r3, t, q, a: (-1.0, 1.0))
    coverage = Calibration(("question_coverage",), (0.5,), (0.25,), (4.0,), 0.0, 0.5)
    got = grounded.answer_question(None, "Where do I live?",  # type: ignore[arg-type]
                                   [grounded.Evidence(str(i), t, 0.1) for i, t in enumerate(texts)], coverage)
    assert (got.answer, got.sources[0].id, got.abstained) == ("Lyon", "1", False)  # not "beautiful"
    alone = grounded.answer_question(None, "Where do I live?",  # type: ignore[arg-type]
                                     [grounded.Evidence(str(i), t, 0.1) for i, t in enumerate(texts)], coverage,
                                     free=False)
    assert alone.abstained, "without the free candidate only the distractor was located"


def test_a_source_read_alone_can_supply_the_answer_a_distracting_one_hid(monkeypatch, no_free_answer):
    """Reading three records together the reader copies a distractor; reading the first alone it finds the
    answer. The most confident grounded candidate is answered, located in its own record."""
    texts = ["I live in Lyon.", "Nate: Sounds like you made your living room comfy!", "Nate: Any pointers?"]

    def fake_extract(r3, group, question):
        return "Lyon" if group == texts[:1] else "Sounds like you made your living room comfy"

    monkeypatch.setattr(grounded, "extract", fake_extract)
    monkeypatch.setattr(grounded, "likelihood", lambda r3, t, q, a: (-1.0, 1.0))
    coverage_only = Calibration(("question_coverage",), (0.5,), (0.25,), (4.0,), 0.0, 0.5)
    got = grounded.answer_question(None, "Where do I live?",  # type: ignore[arg-type]
                                   [grounded.Evidence(str(i), t, 0.1) for i, t in enumerate(texts)], coverage_only,
                                   per_source=3)
    assert not got.abstained and got.answer == "Lyon"
    assert got.sources[0].id == "0" and texts[0][slice(*got.sources[0].span)] == "Lyon"
    joint = grounded.answer_question(None, "Where do I live?",  # type: ignore[arg-type]
                                     [grounded.Evidence(str(i), t, 0.1) for i, t in enumerate(texts)], coverage_only)
    assert joint.abstained, "by default only the joint candidate is read (the calibrated behaviour)"


def test_source_rank_is_the_supporting_records_place_in_recall_order(monkeypatch, no_free_answer):
    """Evidence is read in time order; the feature says how the answer's record ranked in recall."""
    texts = ["Nate: I moved the sofa.", "I live in Lyon.", "Nate: Lyon is lovely."]
    monkeypatch.setattr(grounded, "extract", lambda r3, group, question: "Lyon")
    monkeypatch.setattr(grounded, "likelihood", lambda r3, t, q, a: (-1.0, 1.0))
    evidence = [grounded.Evidence(str(i), t, s) for i, (t, s) in enumerate(zip(texts, (0.9, 0.2, 0.5), strict=True))]
    found = grounded.located(None, "Where do I live?", evidence)  # type: ignore[arg-type]
    assert [(c.sources[0].id, c.features["source_rank"]) for c in found] == [("1", 2)]


def test_the_sources_read_alone_are_the_best_scored(monkeypatch, no_free_answer):
    texts = ["Nate: Any pointers?", "Nate: Sounds like you made your living room comfy!", "I live in Lyon."]
    monkeypatch.setattr(grounded, "extract", lambda r3, group, question: "Lyon" if group == texts[2:] else "")
    monkeypatch.setattr(grounded, "likelihood", lambda r3, t, q, a: (-1.0, 1.0))
    evidence = [grounded.Evidence(str(i), t, s) for i, (t, s) in enumerate(zip(texts, (0.1, 0.2, 0.9), strict=True))]
    found = grounded.located(None, "Where do I live?", evidence, per_source=1)  # type: ignore[arg-type]
    assert [c.answer for c in found] == ["Lyon"], "the best-scored record is read alone, though it comes last"
