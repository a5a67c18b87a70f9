"""Where a figure ran: the precision a training run actually uses (a config's bf16 means "where the
device has it"), and the machine description every result records."""

import pytest
import torch

from r3mem.machine import run_info, usable_precision


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_only_where_the_cpu_has_it(monkeypatch, native):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    precision, why = usable_precision("bf16", "cpu")
    if native:
        assert (precision, why) == ("bf16", None)
    else:
        assert precision == "no" and "no native bf16" in why and "fp32" in why


@pytest.mark.parametrize(("requested", "device"), [("no", "cpu"), ("fp16", "cuda"), ("bf16", "cuda")])
def test_other_requests_pass_through(monkeypatch, requested, device):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert usable_precision(requested, device) == (requested, None)


def test_run_info_names_the_vector_extensions_a_figure_ran_with():
    """The same CPU model name comes with AVX2 only or with AVX-512 BF16; timings differ 3-4x."""
    info = run_info()
    assert info["machine"].endswith(f"cores, {torch.backends.cpu.get_cpu_capability()}")
