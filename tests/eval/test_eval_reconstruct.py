"""`r3mem eval reconstruct` on the tiny model: JSON shape, metric ranges, hand-checkable baselines."""

import json
import math

import pytest
import torch
from tests.conftest import CORPUS

import r3mem.cli
from r3mem.decode.options import DEFAULT_BEAMS, DEFAULT_GUIDANCE, DEFAULT_SPREAD, Decoding
from r3mem.errors import InvalidInput
from r3mem.eval import reconstruct
from r3mem.eval.baselines import prune, truncate
from r3mem.eval.common import spell_out

RATIOS = [2, 4, 8, 16]
SEG = 16  # the tiny fixture's segment_len


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "book.txt"
    path.write_bytes(CORPUS[:1500].replace("\n", "\r\n").encode())
    return path


def run_cli(monkeypatch, tiny, *args):
    monkeypatch.setattr(r3mem.cli, "_load", lambda _args: tiny)
    return r3mem.cli.main(["eval", "reconstruct", *args])


def test_json_rows_and_plot(monkeypatch, tiny, tmp_path, text_file, capsys):
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    code = run_cli(monkeypatch, tiny, "--data", str(text_file), "--segment-len", str(SEG), "--ratios", "2,4,8,16",
                   "--limit", "3", "--json", str(out), "--plot", str(png))
    assert code == 0
    result = json.loads(out.read_text())
    assert {"task", "data", "checkpoint", "model", "rows"} <= set(result)
    assert result["task"] == "reconstruct" and result["data"] == str(text_file)
    assert result["model"] == "tiny-llama" and result["checkpoint"] == tiny.checkpoint_fingerprint
    assert [(r["method"], r["ratio"]) for r in result["rows"]] == [
        (m, r) for m in ("r3mem", "truncate", "prune") for r in RATIOS]
    fields = ["method", "ratio", "token_accuracy", "aligned_token_accuracy", "exact_match", "bleu4", "rougeL",
              "char_similarity", "entity_recall", "entities", "token_accuracy_se", "n"]
    for row in result["rows"]:
        assert list(row) == fields and row["n"] == 3
        assert all(0.0 <= row[m] <= 1.0 for m in reconstruct.METRICS)
        assert row["entity_recall"] is None if row["entities"] == 0 else 0.0 <= row["entity_recall"] <= 1.0
    for row in (r for r in result["rows"] if r["method"] == "truncate"):  # full segments: exactly k / L
        assert row["token_accuracy"] == (SEG // row["ratio"]) / SEG
    assert png.stat().st_size > 1024
    assert result["beams"] == DEFAULT_BEAMS
    # the decoding defaults it ran under are spelled out, so the command reproduces after they change
    assert result["command"].endswith(f"--beams {DEFAULT_BEAMS} --samples 0 --guidance {DEFAULT_GUIDANCE:g}")
    assert "truncate" in capsys.readouterr().out
    # the first SAMPLES segments of every method and ratio, with the text each was scored on
    samples = result["samples"]
    assert [(x["method"], x["ratio"], x["segment"]) for x in samples] == [
        (m, r, i) for m in ("r3mem", "truncate", "prune") for r in RATIOS for i in range(reconstruct.SAMPLES)]
    sources = {x["source"] for x in samples}
    assert len(sources) == reconstruct.SAMPLES and all(isinstance(x["reconstruction"], str) for x in samples)
    for x in (x for x in samples if x["method"] == "truncate" and x["segment"] == 0):
        row = next(r for r in result["rows"] if r["method"] == "truncate" and r["ratio"] == x["ratio"])
        assert x["token_accuracy"] == row["token_accuracy"]  # each segment scores exactly k / L
        assert x["source"] in sources and x["reconstruction"] != x["source"]
    # every segment's accuracy, whose mean is the row's: two runs then compare segment by segment
    per_segment = result["segment_token_accuracy"]
    assert [(x["method"], x["ratio"]) for x in per_segment] == [(r["method"], r["ratio"]) for r in result["rows"]]
    for x, row in zip(per_segment, result["rows"], strict=True):
        assert len(x["token_accuracy"]) == 3 and sum(x["token_accuracy"]) / 3 == pytest.approx(row["token_accuracy"])


def test_segment_len_longer_than_checkpoint_is_refused(monkeypatch, tiny, text_file, capsys):
    assert run_cli(monkeypatch, tiny, "--data", str(text_file), "--segment-len", "32") == 2
    assert "segment-len" in capsys.readouterr().err


@pytest.mark.parametrize("beams", ["0", "17"])
def test_beam_count_out_of_range_is_refused_before_any_work(monkeypatch, tiny, text_file, tmp_path, capsys, beams):
    out = tmp_path / "r.json"
    assert run_cli(monkeypatch, tiny, "--data", str(text_file), "--beams", beams, "--json", str(out)) == 2
    assert "beams must be" in capsys.readouterr().err and not out.exists()


def test_greedy_and_beam_rows_differ_only_in_r3mem_decoding(monkeypatch, tiny, text_file):
    """--beams, --samples and --guidance reach the expansion: the calls carry them, and the baselines
    do not depend on them."""
    seen = []
    real_expand = tiny.expand_snapshots
    monkeypatch.setattr(tiny, "expand_snapshots",
                        lambda *a, **kw: seen.append(kw["decoding"])
                        or real_expand(*a, **kw))
    results = {}
    for beams, samples, guidance in ((1, 0, 0.0), (3, 0, 4.0), (2, 3, 1.5)):
        args = reconstruct.argparse.Namespace(data=str(text_file), segment_len=SEG, ratios=[4], limit=2, seed=0,
                                              methods="r3mem,truncate", beams=beams, samples=samples,
                                              guidance=guidance)
        results[beams] = reconstruct.run(args, tiny)
    assert seen == [Decoding(beams=1, samples=0, guidance=0.0), Decoding(beams=3, samples=0, guidance=4.0),
                    Decoding(beams=2, samples=3, guidance=1.5)]
    recorded = [(results[b].extra["beams"], results[b].extra["cycle_samples"], results[b].extra["guidance"])
                for b in (1, 3, 2)]
    assert recorded == [(1, 0, 0.0), (3, 0, 4.0), (2, 3, 1.5)]
    # the spread is recorded only where guidance ran: an unguided result paid nothing early
    assert [results[b].extra["guidance_spread"] for b in (1, 3, 2)] == [0.0, DEFAULT_SPREAD, DEFAULT_SPREAD]
    assert results[1].rows[1] == results[3].rows[1] == results[2].rows[1]  # truncate


def test_typed_decoding_flags_are_kept_and_the_rest_spelled_out():
    args = reconstruct.argparse.Namespace(beams=2, samples=0, guidance=4.0)
    typed = ["eval", "reconstruct", "--beams=2", "--limit", "3"]
    assert spell_out(typed, reconstruct.pinned_flags(args)) == [*typed, "--samples", "0", "--guidance", "4"]
    args = reconstruct.argparse.Namespace(beams=3, samples=8, guidance=1.5)
    assert spell_out(["eval", "reconstruct"], reconstruct.pinned_flags(args)) == [
        "eval", "reconstruct", "--beams", "3", "--samples", "8", "--guidance", "1.5"]


@pytest.mark.parametrize("samples", ["-1", "33"])
def test_sample_count_out_of_range_is_refused_before_any_work(monkeypatch, tiny, text_file, tmp_path, capsys,
                                                              samples):
    out = tmp_path / "r.json"
    assert run_cli(monkeypatch, tiny, "--data", str(text_file), "--samples", samples, "--json", str(out)) == 2
    assert "samples must be" in capsys.readouterr().err and not out.exists()


def test_shorter_segments_get_exactly_k_vectors(monkeypatch, tiny, text_file):
    seen = []
    real_compress = tiny.compress
    monkeypatch.setattr(tiny, "compress", lambda text, ratio: seen.append(real_compress(text, ratio)) or seen[-1])
    args = reconstruct.argparse.Namespace(data=str(text_file), segment_len=8, ratios=[2, 4], limit=2, seed=0,
                                          methods="r3mem")
    result = reconstruct.run(args, tiny)
    assert [m.memory_tokens for m in seen] == [4, 4, 2, 2]
    assert [r["ratio"] for r in result.rows] == [2, 4] and result.extra["segment_len"] == 8


def test_baselines_see_only_their_k_tokens(monkeypatch, tiny):
    """No leak: a baseline's reconstruction is built from the k stored tokens and the length alone."""
    seen = []
    for module in (truncate, prune):
        monkeypatch.setattr(module, "expand", lambda r3, kept, n, m=module: seen.append((m.NAME, list(kept), n))
                            or list(kept))
    segment = tiny.tokenize(CORPUS)[:SEG]
    reconstruct.baseline_scores(tiny, truncate, [segment], 4, [[]], "t")
    reconstruct.baseline_scores(tiny, prune, [segment], 4, [[]], "p")
    assert seen[0] == ("truncate", segment[:4], SEG)
    assert seen[1][0] == "prune" and len(seen[1][1]) == 4 and seen[1][2] == SEG


def test_truncate_keeps_the_prefix():
    assert truncate.compress(None, list(range(10)), 3) == [0, 1, 2]
    assert truncate.expand(None, [0, 1, 2], 10) == [0, 1, 2]


def test_prune_selects_the_k_most_surprising_in_order():
    ids = [10, 11, 12, 13, 14]
    probs = [0.5, 0.01, 0.9, 0.1, 0.01]  # surprisal -ln p: 0.69, 4.61, 0.11, 2.30, 4.61

    def fake_scorer(r3, seq):
        assert list(seq) == ids
        return [-math.log(p) for p in probs]

    assert prune.select([-math.log(p) for p in probs], 2) == [1, 4]  # tie broken by position
    assert prune.compress(None, ids, 3, scorer=fake_scorer) == [11, 13, 14]
    assert prune.compress(None, ids, 0, scorer=fake_scorer) == []
    assert prune.compress(None, ids, 9, scorer=fake_scorer) == ids


def test_prune_surprisals_from_logits():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]]))
    assert prune.surprisals(logits, [0, 2]) == pytest.approx([math.log(2), -math.log(0.7)])


def test_prune_keeps_exactly_k_on_the_model(tiny):
    ids = tiny.tokenize(CORPUS)[:SEG]
    scores = prune.score_tokens(tiny, ids)
    assert len(scores) == SEG and all(s >= 0 for s in scores)
    for k in (1, 2, 4, 8):
        kept = prune.compress(tiny, ids, k)
        assert len(kept) == k and kept == [ids[i] for i in prune.select(scores, k)]
    restored = prune.expand(tiny, prune.compress(tiny, ids, 4), SEG)
    assert len(restored) <= SEG


def test_reading_text(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.txt").write_bytes("caf\xe9\r\n".encode("latin-1"))
    (tmp_path / "d" / "a.txt").write_bytes("\ufeffcafé\r\nok".encode())
    assert reconstruct.read_texts(str(tmp_path / "d")) == ["café\nok", "café\n"]
    with pytest.raises(InvalidInput):
        reconstruct.read_texts(str(tmp_path / "missing.txt"))


def test_entity_recall_is_pooled_not_averaged():
    with_entities = {"entity_hits": 1, "entity_total": 4}
    without = {"entity_hits": 0, "entity_total": 0}
    rest = dict.fromkeys(reconstruct.METRICS, 0.0)
    row = reconstruct.average("m", 4, [{**rest, **with_entities}, {**rest, **without}])
    assert row["entity_recall"] == 0.25 and row["entities"] == 4  # a per-segment mean would say 0.625


def test_token_accuracy_carries_its_standard_error_over_segments():
    rest = dict.fromkeys(reconstruct.METRICS, 0.0) | {"entity_hits": 0, "entity_total": 0}
    row = reconstruct.average("m", 4, [{**rest, "token_accuracy": a} for a in (0.5, 1.0, 0.75)])
    assert row["token_accuracy"] == pytest.approx(0.75)
    assert row["token_accuracy_se"] == pytest.approx(0.25 / 3 ** 0.5)  # sample stdev 0.25 over sqrt(3)
    assert reconstruct.average("m", 4, [{**rest, "token_accuracy": 0.5}])["token_accuracy_se"] is None


@pytest.mark.parametrize("guidance", ["-1", "65", "nan"])
def test_guidance_out_of_range_is_refused_before_any_work(monkeypatch, tiny, text_file, tmp_path, capsys, guidance):
    out = tmp_path / "r.json"
    assert run_cli(monkeypatch, tiny, "--data", str(text_file), "--guidance", guidance, "--json", str(out)) == 2
    assert "guidance must be" in capsys.readouterr().err and not out.exists()
