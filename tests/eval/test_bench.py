"""`r3mem bench` on the tiny model: speed and fidelity come from the same expansions."""

from r3mem.eval import bench


def test_bench_reports_the_fidelity_of_the_expansions_it_timed(monkeypatch, tiny):
    monkeypatch.setattr(bench.R3Mem, "load", classmethod(lambda cls, **_: tiny))
    result = bench.run_bench(tokens=48, gguf=False)
    assert result["compress_tokens"] == result["expand_tokens"] == 48
    assert result["expand_tok_s"] > 0 and result["expand_greedy_tok_s"] > 0
    for key in ("expand_token_accuracy", "expand_greedy_token_accuracy"):
        assert 0.0 <= result[key] <= 1.0
    assert result["expand_dtype"] == str(tiny.expansion_reader.dtype).removeprefix("torch.")
    table = bench.format_table(result)
    assert f"{result['expand_token_accuracy']:.3f}" in table and "(bench text, not held out)" in table
