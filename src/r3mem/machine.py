"""Where and when something was measured: recorded with every result and training run,
so a figure can always name the machine it came from."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any


def native_bf16(device: str) -> bool:
    """Whether bfloat16 matrix products run natively here (a CPU with AVX512-BF16 or AMX)."""
    import torch

    return device == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def run_info() -> dict[str, Any]:
    """Where and when a result was measured, stored with it."""
    import torch

    cpu = platform.processor()
    if Path("/proc/cpuinfo").is_file():
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    # the vector extensions torch uses: the same CPU model name has come with AVX2 only or with
    # AVX-512 BF16, and the two differ three- to four-fold in training and decoding time
    capability = torch.backends.cpu.get_cpu_capability()
    info = {"machine": f"{platform.machine()} {cpu}, {os.cpu_count()} cores, {capability}".strip(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if torch.cuda.is_available():
        info["gpu"] = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return info


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GiB: the training log records it so a
    user can see what a config needs before the out-of-memory killer tells them."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20  # bytes on macOS, KiB on Linux


def usable_precision(requested: str, device_type: str) -> tuple[str, str | None]:
    """The mixed precision a run can use here, and why it differs from `requested` (None: it doesn't).

    bf16 autocast on a CPU without native bf16 instructions (AVX-512 BF16 or AMX) is emulated by
    oneDNN and far slower than fp32: a 2-core AVX2 EPYC had not finished one training step in 15
    minutes that takes about 22 s with AVX-512 BF16. So a config's bf16 is taken as "where the
    device has it", and such a CPU trains in fp32. GPUs and fp16 are left to Accelerate.
    """
    import torch

    if requested == "bf16" and device_type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        capability = torch.backends.cpu.get_cpu_capability()
        return "no", f"this CPU ({capability}) has no native bf16, so the run trains in fp32, not bf16"
    return requested, None
