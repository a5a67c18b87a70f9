"""The speaker of a record, and whether a question asks about that speaker."""

from __future__ import annotations

from r3mem.answers import Evidence, grounded
from r3mem.answers.confidence import FEATURES, Calibration
from r3mem.answers.speakers import author, author_named, own_things_mentioned, possession_held

TURNS = ["[1:56 pm on 8 May, 2023] Caroline: Thanks, Melanie! The event made me realize self-care matters.",
         "[1:56 pm on 8 May, 2023] Melanie: I ran a charity race for mental health last Saturday."]


def test_author_reads_the_speaker_prefix():
    assert [author(t) for t in TURNS] == ["Caroline", "Melanie"]
    assert author("user: My dog is called Rex.") is None and author("My dog is called Rex.") is None
    assert author("Jon Smith: hello") == "Jon"


def test_a_turn_by_someone_else_than_the_person_asked_about_fails():
    question = "What did Melanie realize after her charity race?"
    assert not author_named(question, TURNS[0], TURNS), "Caroline said it, though she names Melanie"
    assert author_named(question, TURNS[1], TURNS)
    assert author_named("What did Melanie's kids make?", TURNS[1], TURNS)


def test_no_evidence_either_way_passes():
    assert author_named("What is my dog called?", "My dog is called Rex.", ["My dog is called Rex."])
    assert author_named("What did Gina sell?", TURNS[0], TURNS), "the question names no recalled speaker"


def test_possession_held_needs_the_thing_the_question_says_someone_has():
    assert possession_held("What is my dog called?", "My cat is called Luna.") == 0.0
    assert possession_held("What is my dog called?", "My dog is called Rex.") == 1.0
    assert possession_held("What did Caroline's grandma give her?", "A gift from my grandma.") == 1.0
    assert possession_held("Where do I live?", "I live in Lyon.") == 1.0, "nothing possessed: no evidence either way"


def test_possession_is_read_from_the_speakers_side():
    gift = "[1 May] Caroline: Thanks, Melanie! This necklace is a gift from my grandma."
    assert possession_held("What country is Caroline's grandma from?", gift) == 1.0
    assert possession_held("What country is Melanie's grandma from?", gift) == 0.0, "Caroline's 'my' is hers"
    assert possession_held("How did Melanie's son take it?", "[1 May] Caroline: Glad your son is okay!") == 1.0
    assert possession_held("How did Caroline's son take it?", "[1 May] Caroline: Glad your son is okay!") == 0.0


def fake_readers(monkeypatch, extraction: str, free: str) -> Calibration:
    """Readers that always read `extraction` and `free`; returns a calibration that answers anything located."""
    monkeypatch.setattr(grounded, "extract", lambda r3, texts, question: extraction)
    monkeypatch.setattr(grounded, "generate", lambda r3, texts, question: free)
    monkeypatch.setattr(grounded, "likelihood", lambda r3, t, q, a: (-1.0, 1.0))
    n = len(FEATURES)
    return Calibration(FEATURES, (0.0,) * n, (1.0,) * n, (0.0,) * n, 0.0, 0.0)


def test_an_answer_said_by_someone_else_is_not_given(monkeypatch):
    always = fake_readers(monkeypatch, "self-care matters", "")
    evidence = [Evidence(str(i), t, 0.5) for i, t in enumerate(TURNS)]
    asked = grounded.answer_question(None, "What did Melanie realize after the event?", evidence, always)  # type: ignore[arg-type]
    assert asked.abstained, "only Caroline said it"
    hers = grounded.answer_question(None, "What did Caroline realize after the event?", evidence, always)  # type: ignore[arg-type]
    assert hers.answer == "self-care matters" and hers.sources[0].id == "0"


def test_a_question_about_the_askers_own_thing_needs_a_record_that_mentions_it():
    assert not own_things_mentioned("What is my dog called?", "My cat is called Luna.")
    assert own_things_mentioned("What is my dog called?", "My dog is called Rex.")
    assert own_things_mentioned("What are our dogs called?", "Our dogs are Rex and Fido.")
    assert own_things_mentioned("Where do I live?", "My cat is called Luna."), "owning nothing, it asks nothing"
    assert own_things_mentioned("What is Melanie's dog called?", "Melanie: My cat is called Luna."), \
        "another's thing is possession_held's to weigh"


def test_a_confident_copy_of_another_thing_is_no_answer(monkeypatch):
    always = fake_readers(monkeypatch, "Luna", "Luna")
    evidence = [Evidence("cat", "My cat is called Luna.", 0.9)]
    assert grounded.answer_question(None, "What is my dog called?", evidence, always).abstained  # type: ignore[arg-type]
    assert grounded.answer_question(None, "What is my cat called?", evidence, always).answer == "Luna"  # type: ignore[arg-type]
