"""The precision a training run actually uses: a config's bf16 means "where the device has it"."""

import pytest
import torch

from r3mem.machine import usable_precision


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
