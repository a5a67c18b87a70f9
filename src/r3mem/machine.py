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


def run_info() -> dict[str, Any]:
    """Where and when a result was measured, stored with it."""
    import torch

    cpu = platform.processor()
    if Path("/proc/cpuinfo").is_file():
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    info = {"machine": f"{platform.machine()} {cpu}, {os.cpu_count()} cores".strip(),
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
