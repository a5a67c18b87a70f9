"""`r3mem eval cost` on the tiny model: exact byte figures, row shape and outputs."""

import gzip
import json

import pytest
import torch
from tests.conftest import CORPUS

import r3mem.cli
from r3mem.eval import cost


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(CORPUS[:1200], encoding="utf-8")
    return path


def test_cost_figures(monkeypatch, tiny, tmp_path, text_file):
    out, png = tmp_path / "c.json", tmp_path / "c.png"
    monkeypatch.setattr(r3mem.cli, "_load", lambda _args: tiny)
    code = r3mem.cli.main(["eval", "cost", "--data", str(text_file), "--limit", "40", "--ratios", "4,8",
                           "--json", str(out), "--plot", str(png)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["task"] == "cost" and {"data", "checkpoint", "model", "rows"} <= set(result)
    text = tiny.detokenize(tiny.tokenize(CORPUS[:1200])[:40])
    n_tokens = len(tiny.tokenize(text))
    assert result["tokens"] == n_tokens
    rows = {(r["method"], r["ratio"]): r for r in result["rows"]}
    assert set(rows) == {(m, r) for m in ("r3mem_fp16", "r3mem_int8", "r3mem_file", "throughput") for r in (4, 8)} \
        | {("raw_utf8", None), ("gzip", None)}
    assert rows["raw_utf8", None]["bytes_per_token"] == len(text.encode()) / n_tokens
    d = tiny.network.hidden_size
    segments = -(-n_tokens // 16)
    for ratio in (4, 8):
        m = 16 // ratio
        assert rows["r3mem_fp16", ratio]["bytes_per_token"] == m * d * 2 * segments / n_tokens
        assert rows["r3mem_int8", ratio]["bytes_per_token"] == (m * d + 2 * m) * segments / n_tokens
        assert "2-byte fp16 scale per vector" in rows["r3mem_int8", ratio]["stored"]
        assert rows["r3mem_file", ratio]["bytes_per_token"] > rows["r3mem_fp16", ratio]["bytes_per_token"]
        speed = rows["throughput", ratio]
        assert speed["compress_tok_s"] > 0 and speed["expand_tok_s"] > 0 and speed["peak_rss_mb"] > 0
    assert rows["gzip", None]["bytes_per_token"] == len(gzip.compress(text.encode(), 9, mtime=0)) / n_tokens
    assert png.stat().st_size > 1024


def test_int8_quantisation_is_symmetric_per_row():
    x = torch.tensor([[[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]]])
    q, scale = cost.quantise_int8(x)
    assert q.dtype == torch.int8 and scale.dtype == torch.float16 and scale.shape == (1, 2, 1)
    assert q[0, 0].tolist() == [64, -127, 32] and q[0, 1].tolist() == [0, 0, 0]
    assert torch.allclose(q.float() * scale.float(), x, atol=2 / 127)
