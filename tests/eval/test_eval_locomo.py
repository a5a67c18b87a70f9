"""`r3mem eval locomo` on the tiny model: a fresh store per conversation, recall through the store, scoring."""

import json

import pytest
from tests.embedders import HashEmbedder
from tests.fake_answers import answer_if_held

import r3mem.cli
from r3mem import reader
from r3mem.answers.confidence import load_calibration
from r3mem.cli import main
from r3mem.eval import answering, locomo
from r3mem.store import MemoryStore, memory_store
from r3mem.store.recall import DEFAULT_METHOD


def conversation(sample_id, a, b, lines, qa):
    sessions = {}
    for n, session in enumerate(lines, start=1):
        sessions[f"session_{n}_date_time"] = f"1:00 pm on {n} May, 2023"
        sessions[f"session_{n}"] = [{"speaker": (a, b)[i % 2], "dia_id": f"D{n}:{i + 1}", "text": t}
                                    for i, t in enumerate(session)]
    return {"sample_id": sample_id, "conversation": {"speaker_a": a, "speaker_b": b, **sessions}, "qa": qa}


CONV_A = conversation("conv-a", "Alice", "Bob", [
    ["I bought fresh zucchini at the market.", "Nice, I went hiking in the Alps last week.",
     "The zucchini was for a soup.", "That sounds fun."],
    ["My sister visits on Friday.", "Tell her I said hello."],
], [
    {"question": "Where did Alice buy zucchini?", "answer": "market", "evidence": ["D1:1", "D1:3"], "category": 1},
    {"question": "Where did Bob go hiking?", "answer": "the Alps", "evidence": ["D1:2"], "category": 2},
    {"question": "What did Alice say about her brother?", "adversarial_answer": "a secret",
     "evidence": [], "category": 5},
])
CONV_B = conversation("conv-b", "Carol", "Dave", [
    ["I adopted a puppy named Rex.", "Rex is a lovely name.", "We walk by the river daily.", "Sounds relaxing."],
], [
    {"question": "What is the puppy called?", "answer": "Rex", "evidence": ["D1:1"], "category": 1},
    {"question": "Where do they walk?", "answer": 7, "evidence": ["D1:3; D1:4"], "category": 3},
])


GIVEN_CALIBRATIONS: list = []  # what each grounded answer of the fake reader was given; None: the packaged one


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps([CONV_A, CONV_B]))
    return path


@pytest.fixture
def calls(monkeypatch, tiny):
    """The tiny model, a recording fake reader (right iff the gold is in its context), hashed words for MiniLM."""
    monkeypatch.setattr(r3mem.cli, "_load", lambda args: tiny)
    gold = {q["question"]: str(q.get("answer", q.get("adversarial_answer"))) for c in (CONV_A, CONV_B)
            for q in c["qa"]}
    log = []
    calibrations = GIVEN_CALIBRATIONS
    calibrations.clear()

    def from_text(r3, context, question, **kw):
        log.append((question, context))
        return gold[question] if gold[question] in context else "nothing"

    def grounded(r3, question, evidence, calibration=None):
        """The grounded reader's fake: the gold when a recalled turn holds it, else an abstention."""
        log.append((question, "\n".join(e.text for e in evidence)))
        calibrations.append(calibration)
        return answer_if_held(gold[question], evidence)

    monkeypatch.setattr(reader, "answer_from_text", from_text)
    monkeypatch.setattr(answering, "answer_question", grounded)
    monkeypatch.setattr(memory_store, "default_embedder", HashEmbedder)
    return log


def run_locomo(data, tmp_path, *extra):
    out = tmp_path / "locomo.json.out"
    assert main(["eval", "locomo", "--data", str(data), "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def row(result, method, category):
    return next(r for r in result["rows"] if r["method"] == method and r["category"] == category)


def test_records_are_dated_turns():
    records = locomo.turns(CONV_A)
    assert [r.dia_id for r in records] == ["D1:1", "D1:2", "D1:3", "D1:4", "D2:1", "D2:2"]
    assert records[4].text == "[1:00 pm on 2 May, 2023] Alice: My sister visits on Friday."
    assert locomo.questions(CONV_B, None)[1].evidence == ["D1:3", "D1:4"]  # "D1:3; D1:4" split
    assert locomo.questions(CONV_A, None)[2].answer == "a secret"  # adversarial answer when no answer


def test_stores_never_cross_conversations(data, tmp_path, calls):
    run_locomo(data, tmp_path, "--top-k", "3")
    own = {q["question"]: {t.text for t in locomo.turns(c)} for c in (CONV_A, CONV_B) for q in c["qa"]}
    methods = locomo.METHODS
    assert len(calls) == 5 * len(methods)
    for question, context in calls:
        assert not context or set(context.split("\n")) <= own[question]
    by_method = {m: calls[i :: len(methods)] for i, m in enumerate(methods)}  # methods take turns per question
    assert all(len(c.split("\n")) == 3 for _, c in by_method["r3mem"][:3])  # top-3 of conversation A's 6 turns
    assert [c for _, c in by_method["full_context"]] == [
        "\n".join(t.text for t in locomo.turns(c)) for c in (CONV_A,) * 3 + (CONV_B,) * 2]
    assert all(c == "" for _, c in by_method["no_memory"])


def test_recall_at_k_and_f1_by_hand(data, tmp_path, calls):
    result = run_locomo(data, tmp_path, "--methods", "bm25", "--top-k", "1", "--conversations", "1")
    # "Where did Alice buy zucchini?": the lexical top-1 is D1:1 or D1:3 (both Alice, zucchini): 1 of 2 ids.
    assert row(result, "bm25", 1)["recall_at_k"] == 0.5
    assert row(result, "bm25", 1)["recall_at_10"] == 1.0  # both within ten of six turns
    assert row(result, "bm25", 2)["recall_at_k"] == 1.0  # "Bob" + "hiking": D1:2
    assert row(result, "bm25", 5)["recall_at_k"] is None  # no evidence: left out
    assert row(result, "bm25", "all")["recall_at_k"] == 0.75
    assert row(result, "bm25", 2)["f1"] == 1.0  # the gold "the Alps" was in the recalled turn
    assert row(result, "bm25", "all")["n"] == 3
    assert [r["category"] for r in result["rows"]] == [1, 2, 5, "1-4", "all"]


def test_every_retrieval_method_is_the_stores_recall(data, tmp_path, calls, monkeypatch):
    seen, adds = [], []
    recall, add = MemoryStore.recall, MemoryStore.add
    monkeypatch.setattr(MemoryStore, "recall", lambda s, *a, **kw: seen.append(kw["method"]) or recall(s, *a, **kw))
    monkeypatch.setattr(MemoryStore, "add", lambda s, *a, **kw: adds.append(kw["text"]) or add(s, *a, **kw))
    result = run_locomo(data, tmp_path, "--methods", "r3mem,bm25,dense,bm25_dense")
    assert seen == [DEFAULT_METHOD, "bm25", "dense", "bm25_dense"] * 5
    assert adds == [t.text for c in (CONV_A, CONV_B) for t in locomo.turns(c)]  # turn by turn, in order
    assert result["default_method"] == DEFAULT_METHOD


def test_answers_limit_and_reused_stores(data, tmp_path, calls):
    stores = tmp_path / "stores"
    first = run_locomo(data, tmp_path, "--methods", "bm25", "--answers", "1", "--stores", str(stores))
    assert row(first, "bm25", "all")["answered"] == 2 and row(first, "bm25", "all")["n"] == 5
    assert row(first, "bm25", "all")["add_p50_ms"] > 0
    again = run_locomo(data, tmp_path, "--methods", "bm25", "--answers", "1", "--stores", str(stores))
    assert row(again, "bm25", "all")["recall_at_k"] == row(first, "bm25", "all")["recall_at_k"]
    assert row(again, "bm25", "all")["add_p50_ms"] is None  # nothing added: no add latency to report


def test_rows_fields_limit_and_plot(data, tmp_path, calls):
    plot = tmp_path / "locomo.png"
    result = run_locomo(data, tmp_path, "--limit", "1", "--methods", "r3mem,full_context", "--plot", str(plot))
    assert list(result["rows"][0]) == ["method", "category", "recall_at_k", "recall_at_10", "f1", "exact_match",
                                       "abstained", "context_tokens", "add_p50_ms", "recall_p50_ms", "recall_p95_ms",
                                       "n", "answered"]
    r3 = row(result, "r3mem", "all")
    assert r3["n"] == 2 and r3["add_p50_ms"] > 0 and r3["recall_p95_ms"] >= r3["recall_p50_ms"] > 0
    full = row(result, "full_context", "all")
    assert full["recall_at_k"] is None and full["add_p50_ms"] is None and full["context_tokens"] > 0
    assert result["conversations"] == ["conv-a", "conv-b"]
    assert plot.stat().st_size > 1000


def test_bad_input_is_refused(tmp_path, calls, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a list"}')
    assert main(["eval", "locomo", "--data", str(bad)]) == 2
    assert "not LoCoMo" in capsys.readouterr().err
    assert main(["eval", "locomo", "--data", str(tmp_path / "missing.json")]) == 2


def test_memory_only_turns_are_recalled_by_what_their_memories_give_back(data, tmp_path, calls):
    result = run_locomo(data, tmp_path, "--no-text", "--methods", "r3mem,bm25,dense,bm25_dense", "--top-k", "3")
    assert calls == []  # nothing to read: memory-only turns are not reconstructed for recall
    assert result["store_text"] is False
    for method in ("r3mem", "bm25", "dense", "bm25_dense"):
        all_row = row(result, method, "all")
        assert all_row["recall_at_k"] is not None and all_row["answered"] == 0


def test_grounded_answers_abstain_where_free_generation_answers(data, tmp_path, calls):
    result = run_locomo(data, tmp_path, "--methods", "r3mem,r3mem_free", "--top-k", "6")
    assert row(result, "r3mem", 5)["abstained"] == 1.0  # "a secret" is in no turn: nothing to ground
    assert row(result, "r3mem_free", 5)["abstained"] == 0.0  # the fake free reader answers "nothing"
    # of the four answerable ones, only "Where do they walk?" (answer 7, in no turn) is abstained on
    assert row(result, "r3mem", "1-4")["abstained"] == 0.25 and row(result, "r3mem", "1-4")["n"] == 4
    assert row(result, "r3mem", 2)["f1"] == row(result, "r3mem", 2)["exact_match"] == 1.0
    assert row(result, "r3mem", "all")["recall_at_k"] == row(result, "r3mem_free", "all")["recall_at_k"]
    paired = result["paired_f1"]  # the same questions of both conversations, right and wrong alike
    assert [(p["method"], p["against"], p["f1_diff"], p["n"]) for p in paired] == [("r3mem", "r3mem_free", 0.0, 4)]


def test_a_calibration_fitted_elsewhere_replaces_the_packaged_one(data, tmp_path, calls, capsys):
    fitted = tmp_path / "calibration.json"
    fitted.write_text(json.dumps({**load_calibration().as_dict(), "threshold": 0.25}))
    run_locomo(data, tmp_path, "--methods", "r3mem", "--calibration", str(fitted))
    assert {c.threshold for c in GIVEN_CALIBRATIONS} == {0.25}
    GIVEN_CALIBRATIONS.clear()
    run_locomo(data, tmp_path, "--methods", "r3mem")
    assert set(GIVEN_CALIBRATIONS) == {None}
    broken = tmp_path / "broken.json"
    broken.write_text('{"threshold": 0.5}')
    for bad in (broken, tmp_path / "missing.json"):
        assert main(["eval", "locomo", "--data", str(data), "--calibration", str(bad)]) == 2
        assert f"cannot read the calibration {bad}" in capsys.readouterr().err


def test_paired_f1_pairs_by_question_and_leaves_out_category_5():
    outcomes = [locomo.Outcome("r3mem", 1, question=0, f1=1.0), locomo.Outcome("r3mem_free", 1, question=0, f1=0.5),
                locomo.Outcome("r3mem", 2, question=1, f1=0.0), locomo.Outcome("r3mem_free", 2, question=1, f1=0.0),
                locomo.Outcome("r3mem", 5, question=2, f1=0.0), locomo.Outcome("r3mem_free", 5, question=2, f1=1.0)]
    (got,) = locomo.paired_f1(outcomes, ["r3mem", "r3mem_free"])
    assert (got["f1_diff"], got["n"]) == (0.25, 2) and got["ci95_low"] < 0.25 < got["ci95_high"]
    assert locomo.paired_f1(outcomes, ["r3mem_free"]) == [], "no grounded method, nothing to pair"


def test_every_nth_question_reaches_the_last_category():
    assert [q.category for q in locomo.questions(CONV_A, None, every=2)] == [1, 5]
    assert [q.category for q in locomo.questions(CONV_A, 1, every=2)] == [1]
