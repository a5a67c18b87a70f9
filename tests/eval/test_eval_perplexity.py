"""`r3mem eval perplexity` on the tiny model: equal budgets, same tokens, paired intervals."""

import json
import math

import pytest
import torch
from tests.conftest import CORPUS

from r3mem import cli
from r3mem.context_lm import context_vectors, target_nll, write_snapshots
from r3mem.context_memory import block_sizes, pack_blocks
from r3mem.errors import InvalidInput
from r3mem.eval import perplexity

SMALL = ["--window", "24", "--memory-tokens", "8", "--full-window", "48", "--stride", "40"]


@pytest.fixture
def book(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(CORPUS * 6)
    return path


def test_rows_json_and_paired_interval(tiny, book, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_load", lambda args: tiny)
    out = tmp_path / "ppl.json"
    code = cli.main(["eval", "perplexity", "--data", str(book), "--history", "32,64,all", "--limit", "3",
                     *SMALL, "--json", str(out), "--plot", str(tmp_path / "ppl.png")])
    assert code == 0
    assert "memory - window" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["task"] == "perplexity" and result["window"] == 24 and result["memory_tokens"] == 8
    for history in ("32", "64", "all"):
        rows = {r["method"]: r for r in result["rows"] if r["history"] == history}
        assert set(rows) == {"no_context", "window", "memory", "full_context"}
        assert all(math.isfinite(r["ppl"]) and r["ppl"] > 1 and r["n"] == 3 for r in rows.values())
        assert rows["window"]["context_positions"] == rows["memory"]["context_positions"] == 24
        assert rows["no_context"]["context_positions"] == 0
    delta = {d["history"]: d for d in result["memory_minus_window"]}
    for history, d in delta.items():
        mem = result["nll_per_target"][f"{history}/memory"]
        win = result["nll_per_target"][f"{history}/window"]
        assert d["memory_minus_window_nats"] == pytest.approx(sum(mem) / 3 - sum(win) / 3, abs=1e-4)
        assert d["ci95_low"] <= d["memory_minus_window_nats"] <= d["ci95_high"]
    longer = result["memory_longest_minus_shortest"]
    mem_all, mem_32 = result["nll_per_target"]["all/memory"], result["nll_per_target"]["32/memory"]
    assert longer["longest"] == "all" and longer["shortest"] == "32"
    assert longer["nats"] == pytest.approx(sum(mem_all) / 3 - sum(mem_32) / 3, abs=1e-4)
    assert (tmp_path / "ppl.png").stat().st_size > 1000


def test_memory_depends_only_on_its_history(tiny):
    """The memory of a 32-token history must not see what lies before it."""
    ids = tiny.tokenize(CORPUS)
    a = write_snapshots(tiny.network, [ids[100:132]], 8, 16)
    b = write_snapshots(tiny.network, [ids[100:132]], 8, 16)
    longer = write_snapshots(tiny.network, [ids[84:132]], 8, 16)
    assert torch.equal(a, b) and a.shape == (1, 2, 8, tiny.network.hidden_size)
    assert not torch.equal(a[0, -1], longer[0, -1]), "the recurrence carries the older segment"


def test_budget_holds_for_any_history_length(tiny):
    dim = tiny.network.hidden_size
    for n_seg in (1, 3, 8, 9, 40, 500):
        sizes = block_sizes(n_seg, 8)
        assert sum(sizes) == n_seg and len(sizes) <= 8
        assert sizes[-2:] == [1, 1][: len(sizes)] or n_seg < 2
        vectors, levels = pack_blocks(torch.randn(n_seg, 8, dim), 64)
        assert vectors.shape[0] <= 64 and vectors.shape == (levels.shape[0], dim)
    prefix = context_vectors(tiny.network, tiny.context_reader, torch.randn(500, 8, dim), 64)
    assert prefix.shape == (64, dim)


def test_every_method_scores_the_same_tokens(tiny):
    ids = tiny.tokenize(CORPUS)
    target = ids[200:328]
    prefix = context_vectors(tiny.network, tiny.context_reader,
                             write_snapshots(tiny.network, [ids[100:180]], 8, 16)[0], 8).unsqueeze(0)
    alone = target_nll(tiny.network, None, [], target)
    windowed = target_nll(tiny.network, None, ids[180:200], target)
    with_memory = target_nll(tiny.network, prefix, ids[184:200], target)
    assert alone.shape == windowed.shape == with_memory.shape == (127,)
    assert not torch.equal(alone, windowed) and not torch.equal(windowed, with_memory)


def test_short_text_and_bad_budget_are_refused(tiny, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("A very short book.")
    parse = cli.build_parser().parse_args
    with pytest.raises(InvalidInput, match="too short"):
        perplexity.run(parse(["eval", "perplexity", "--data", str(short), "--history", "32", *SMALL]), tiny)
    with pytest.raises(InvalidInput, match="memory-tokens"):
        perplexity.run(parse(["eval", "perplexity", "--data", str(short), "--window", "8",
                              "--memory-tokens", "8"]), tiny)
    with pytest.raises(InvalidInput, match="memory-tokens must be in 2"):
        perplexity.run(parse(["eval", "perplexity", "--data", str(short), "--window", "8",
                              "--memory-tokens", "1"]), tiny)
    with pytest.raises(InvalidInput, match="not a LoCoMo"):
        perplexity.load_texts(f"{short}#conv-0")
    convs = tmp_path / "convs.json"
    convs.write_text('[{"sample_id": "conv-1", "conversation": {}}]')
    with pytest.raises(InvalidInput, match="no conversation"):
        perplexity.load_texts(f"{convs}#conv-0")


def test_verbatim_level_keeps_the_newest_tokens_inside_the_budget(tiny):
    from r3mem.context_lm import memory_prefix
    from r3mem.context_memory import ContextConfig, ContextReader

    reader = ContextReader(tiny.network.hidden_size, ContextConfig(verbatim=4))
    history = tiny.tokenize(CORPUS)[:80]
    prefix = memory_prefix(tiny.network, reader, history, 12)
    assert prefix.shape[1] <= 12
    newest = tiny.network.embed(torch.tensor(history[-4:])).float()
    assert torch.equal(prefix[0, -4:], newest), "the finest level is the text itself"
    assert prefix.shape[1] > 4, "older text is still compressed beside it"


@pytest.mark.parametrize("verbatim", [0, 4])
def test_whole_past_folded_once_equals_the_memory_written_from_the_start(tiny, verbatim):
    """`--history all` folds the text once as targets advance; each prefix is the one written from scratch."""
    from r3mem.context_memory import ContextConfig, ContextReader
    from r3mem.eval.perplexity import _memory_prefix, _WholePast

    tiny.context_reader = ContextReader(tiny.network.hidden_size, ContextConfig(verbatim=verbatim))
    ids = tiny.tokenize(CORPUS * 3)
    seg = tiny.config.segment_len
    whole = _WholePast(tiny, ids, 16)
    for end in (37 + 4 * seg, 37 + 6 * seg, 37 + 9 * seg):  # whole segments apart, as the targets are
        assert torch.allclose(whole.prefix(end), _memory_prefix(tiny, ids, 0, end, 16), atol=1e-5)
    with pytest.raises(ValueError, match="whole segments apart"):
        whole.prefix(37 + 9 * seg + 3)


def test_activation_whole_past_folded_once_equals_the_memory_folded_from_the_start(tiny):
    """The activation memory's `--history all` continues each target's memory into the next one's."""
    from r3mem import activation_memory as am
    from r3mem.eval.perplexity import _WholePastActivations

    ids = tiny.tokenize(CORPUS * 3)
    seg = tiny.config.segment_len
    config = am.ActivationConfig(budget=8)
    whole = _WholePastActivations(tiny, ids, config)
    for end in (37 + 4 * seg, 37 + 6 * seg):
        folded = whole.memory_of(end)
        with tiny.network.adapter(None):
            fresh = am.fold_all(tiny.network.causal_lm, ids[:end], seg, config)
        assert folded.size == fresh.size == 8
        for a, b in zip(folded.keys + folded.values, fresh.keys + fresh.values, strict=True):
            assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="whole segments apart"):
        whole.memory_of(37 + 6 * seg + 3)
