"""`r3mem eval perplexity` on the tiny model: shape, sanity, and what each method sees."""

import json
import math

import pytest
from tests.conftest import CORPUS

from r3mem import cli
from r3mem.errors import InvalidInput
from r3mem.eval import perplexity


@pytest.fixture
def book(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(CORPUS * 6)
    return path


def test_rows_and_json_shape(tiny, book, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_load", lambda args: tiny)
    out = tmp_path / "ppl.json"
    code = cli.main(["eval", "perplexity", "--data", str(book), "--history", "32,64,all", "--limit", "2",
                     "--stride", "40", "--json", str(out), "--plot", str(tmp_path / "ppl.png")])
    assert code == 0
    result = json.loads(out.read_text())
    assert {"task", "data", "checkpoint", "model", "rows"} <= set(result) and result["task"] == "perplexity"
    methods = {"no_context", "memory", "truncated", "full_context"}
    for history in ("32", "64", "all"):
        rows = {r["method"]: r for r in result["rows"] if r["history"] == history}
        assert set(rows) == methods
        assert all(math.isfinite(r["ppl"]) and r["ppl"] > 1 and r["n"] == 2 for r in rows.values())
        assert rows["no_context"]["context_tokens"] == 0
        assert rows["memory"]["context_tokens"] == rows["truncated"]["context_tokens"] == 4  # 16 / ratio 4
    fixed = {r["method"]: r for r in result["rows"] if r["history"] == "64"}
    assert fixed["full_context"]["context_tokens"] == fixed["full_context"]["history_tokens"] == 64
    assert (tmp_path / "ppl.png").stat().st_size > 1000


def test_every_method_scores_the_same_tokens(tiny, monkeypatch):
    seen: list[tuple[int, int]] = []
    real = perplexity.base_nll

    def spy(r3, context, target):
        total, count = real(r3, context, target)
        seen.append((len(context), count))
        return total, count

    monkeypatch.setattr(perplexity, "base_nll", spy)
    target = tiny.tokenize(CORPUS)[:128]
    _, mem_count = perplexity.memory_nll(tiny, tiny.tokenize(CORPUS)[:40], target, 4)
    perplexity.base_nll(tiny, [], target)
    perplexity.base_nll(tiny, [1, 2, 3], target)
    assert [c for _, c in seen] == [127, 127] and mem_count == 127
    assert seen[0][0] == 0, "no_context must receive no context"


def test_context_changes_base_nll(tiny):
    target = tiny.tokenize(CORPUS)[200:328]
    alone, _ = perplexity.base_nll(tiny, [], target)
    with_ctx, _ = perplexity.base_nll(tiny, tiny.tokenize(CORPUS)[:100], target)
    assert alone != with_ctx


def test_short_book_is_refused(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_load", lambda args: tiny)
    short = tmp_path / "short.txt"
    short.write_text("A very short book.")
    with pytest.raises(InvalidInput, match="too short"):
        perplexity.run(cli.build_parser().parse_args(["eval", "perplexity", "--data", str(short)]), tiny)
