"""What a benchmark ran on: every result file carries it, so numbers from two machines
are never compared without seeing that they are."""

from __future__ import annotations

import os
import platform
from importlib.metadata import version


def machine(*packages: str) -> dict[str, str]:
    """Python, platform, CPUs and the versions of onnxruntime, Spine and ``packages``."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
        **{package: version(package) for package in ("onnxruntime", "spine", *packages)},
    }
