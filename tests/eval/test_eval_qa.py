"""`r3mem eval qa` on the tiny model, with a recording fake reader: what context each method gives."""

import json

import pytest
from tests.embedders import HashEmbedder
from tests.fake_answers import answer_if_held

import r3mem.cli
from r3mem import bm25, reader
from r3mem.cli import main
from r3mem.eval import answering
from r3mem.eval import qa as qa_eval
from r3mem.eval.qa_answers import ANSWER_METHODS
from r3mem.eval.retrievers import dense
from r3mem.store import memory_store

PARAGRAPHS = [
    ["Super Bowl 50 was won by the Denver Broncos. The game was played in Santa Clara. "
     "It was the fiftieth Super Bowl and the teams wore gold.",
     "Peyton Manning was the quarterback of the Denver Broncos. He retired after the season.",
     "The halftime show featured Coldplay. Tickets cost thousands of dollars. The stadium was full. "
     "Fans travelled from every state. Television ratings were among the highest ever recorded."],
    ["Warsaw is the capital of Poland. The Vistula river flows through the city."],
]
QUESTIONS = [  # (article, paragraph, question, answer)
    (0, 0, "Who won Super Bowl 50?", "Denver Broncos"),
    (0, 1, "Who was the quarterback?", "Peyton Manning"),
    (1, 0, "What river flows through Warsaw?", "Vistula"),
]


@pytest.fixture
def squad(tmp_path):
    data = [{"title": f"a{ai}", "paragraphs": [
        {"context": ctx, "qas": [{"id": f"{ai}-{pi}", "question": q, "answers": [{"answer_start": 0, "text": a}]}
                                 for qa_, qp, q, a in QUESTIONS if (qa_, qp) == (ai, pi)]}
        for pi, ctx in enumerate(paras)]} for ai, paras in enumerate(PARAGRAPHS)]
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": "1.1", "data": data}))
    return path


@pytest.fixture
def calls(monkeypatch, tiny):
    """Load the tiny model; fake readers record their context and answer right iff the gold is in it."""
    monkeypatch.setattr(r3mem.cli, "_load", lambda args: tiny)
    gold = {q: a for *_, q, a in QUESTIONS}
    log = {"text": [], "memory": []}

    def from_text(r3, context, question, **kw):
        log["text"].append((question, context))
        return gold[question] if gold[question] in context else "no idea"

    def from_memory(r3, memory, question, **kw):
        log["memory"].append((question, tuple(memory.shape)))
        return "no idea"

    monkeypatch.setattr(reader, "answer_from_text", from_text)
    monkeypatch.setattr(reader, "answer_from_memory", from_memory)
    monkeypatch.setattr(dense, "DenseRetriever", bm25.BM25Retriever)  # no MiniLM load in unit tests
    monkeypatch.setattr(memory_store, "default_embedder", HashEmbedder)
    log["grounded"] = []

    def grounded(r3, question, evidence, calibration=None):
        """The grounded reader's fake: the gold when a recalled record holds it, else an abstention."""
        log["grounded"].append((question, "\n".join(e.text for e in evidence)))
        return answer_if_held(gold[question], evidence)

    monkeypatch.setattr(answering, "answer_question", grounded)
    return log


def run_qa(squad, tmp_path, *extra):
    out = tmp_path / "qa.json"
    assert main(["eval", "qa", "--data", str(squad), "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_no_context_gets_no_context(squad, tmp_path, calls):
    result = run_qa(squad, tmp_path, "--methods", "no_context")
    assert calls["text"] == [(q, "") for *_, q, _ in QUESTIONS]
    assert result["rows"] == [{"method": "no_context", "em": 0.0, "f1": 0.0, "context_tokens": 0,
                               "latency_ms_p50": result["rows"][0]["latency_ms_p50"], "n": 3}]


def test_raw_context_gets_exactly_the_paragraph(squad, tmp_path, calls):
    result = run_qa(squad, tmp_path, "--methods", "raw_context")
    assert calls["text"] == [(q, PARAGRAPHS[a][p]) for a, p, q, _ in QUESTIONS]
    assert result["rows"][0]["em"] == 1.0 and result["rows"][0]["f1"] == 1.0


def test_memory_gets_flattened_snapshots(squad, tmp_path, calls, tiny):
    result = run_qa(squad, tmp_path, "--methods", "memory", "--ratio", "4")
    m, d = tiny.config.memory_tokens_for(4), tiny.network.hidden_size
    expected = []
    for a, p, q, _ in QUESTIONS:
        n_segments = -(-len(tiny.tokenize(PARAGRAPHS[a][p])) // tiny.config.segment_len)
        expected.append((q, (n_segments * m, d)))
    assert calls["memory"] == expected and calls["text"] == []
    assert result["rows"][0]["context_tokens"] == pytest.approx(sum(s[0] for _, s in expected) / 3)


def test_rag_reads_top_k_chunks_of_the_whole_article(squad, tmp_path, calls, tiny):
    run_qa(squad, tmp_path, "--methods", "bm25_rag", "--top-k", "1", "--limit", "2")
    article = "\n\n".join(PARAGRAPHS[0])
    chunks = qa_eval.chunk_text(tiny, article)
    assert len(chunks) >= 3  # the tiny tokenizer makes this article several chunks long
    for _, context in calls["text"]:
        assert context in chunks
    # BM25 picks the chunk holding each answer.
    assert "Denver Broncos" in calls["text"][0][1] and "Peyton Manning" in calls["text"][1][1]
    assert "Coldplay" not in calls["text"][0][1]


def test_all_methods_rows_json_and_plot(squad, tmp_path, calls):
    plot = tmp_path / "qa.png"
    result = run_qa(squad, tmp_path, "--plot", str(plot))
    assert [r["method"] for r in result["rows"]] == list(qa_eval.METHODS)
    for row in result["rows"]:
        answers = ["abstained", "unanswerable_abstained"] if row["method"] in ANSWER_METHODS else []
        assert list(row) == ["method", "em", "f1", "context_tokens", "latency_ms_p50", "n", *answers]
        assert row["n"] == 3 and 0.0 <= row["em"] <= row["f1"] <= 1.0 and row["latency_ms_p50"] >= 0
    assert result["task"] == "qa" and result["ratio"] == 4 and result["top_k"] == 2
    assert plot.stat().st_size > 1000


def test_grounded_answers_are_asked_of_their_article_and_of_one_that_cannot_answer(squad, tmp_path, calls):
    result = run_qa(squad, tmp_path, "--methods", "r3mem,r3mem_free")
    grounded, free = result["rows"]
    assert grounded["method"] == "r3mem" and grounded["unanswerable_abstained"] == 1.0, "no gold, no answer"
    assert free["unanswerable_abstained"] == 0.0, "the fake free reader says 'no idea', which is no refusal"
    assert grounded["f1"] == 1.0 - grounded["abstained"], "answered means the gold span here"
    asked_of = {}
    for question, context in calls["grounded"]:
        asked_of.setdefault(question, []).append(context)
    here, elsewhere = asked_of["What river flows through Warsaw?"]
    assert "Vistula" in here and "Vistula" not in elsewhere and "Broncos" in elsewhere


def test_the_answer_methods_need_two_articles(squad, tmp_path, calls, capsys):
    one = json.loads(squad.read_text())
    one["data"] = one["data"][:1]
    path = tmp_path / "one.json"
    path.write_text(json.dumps(one))
    assert main(["eval", "qa", "--data", str(path), "--methods", "r3mem"]) == 2
    assert "at least two articles" in capsys.readouterr().err


def test_limit_and_bad_input(squad, tmp_path, calls, capsys):
    assert run_qa(squad, tmp_path, "--methods", "no_context", "--limit", "1")["rows"][0]["n"] == 1
    run_qa(squad, tmp_path, "--methods", "no_context", "--every", "2")
    assert [q for q, _ in calls["text"][-2:]] == ["Who won Super Bowl 50?", "What river flows through Warsaw?"]
    assert main(["eval", "qa", "--data", str(squad), "--every", "0"]) == 2
    assert main(["eval", "qa", "--data", str(squad), "--methods", "oracle"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["eval", "qa", "--data", str(bad)]) == 2
    assert "not SQuAD" in capsys.readouterr().err


def test_chunks_keep_whole_sentences_under_the_budget(tiny):
    text = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(40))
    chunks = qa_eval.chunk_text(tiny, text, max_tokens=32)
    assert " ".join(chunks) == text
    assert all(c.endswith(".") for c in chunks)
    assert all(len(tiny.tokenize(c)) <= 32 + 2 for c in chunks)  # + 2: BPE merges across the joining space


def test_expanded_decodes_at_the_chosen_width_and_the_command_pins_it(squad, tmp_path, calls, tiny, monkeypatch):
    widths = []
    real_expand = type(tiny).expand

    def recording_expand(self, memory, *args, **kw):
        widths.append(kw["decoding"].beams)
        return real_expand(self, memory, *args, **kw)

    monkeypatch.setattr(type(tiny), "expand", recording_expand)
    result = run_qa(squad, tmp_path, "--methods", "expanded", "--beams", "2", "--limit", "2")
    assert widths == [2, 2] and result["beams"] == 2
    assert "--beams 2 " in result["command"] and result["command"].count("--beams") == 1
    default = run_qa(squad, tmp_path, "--methods", "no_context", "--limit", "1")
    assert default["command"].endswith(f"--beams {qa_eval.DEFAULT_BEAMS}") and default["beams"] == qa_eval.DEFAULT_BEAMS


def test_out_of_range_width_is_a_one_line_error(squad, tmp_path, calls, capsys):
    assert main(["eval", "qa", "--data", str(squad), "--beams", "0"]) == 2
    err = capsys.readouterr().err
    assert "beams must be an integer" in err and err.count("\n") == 1
