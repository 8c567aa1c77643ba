"""The machine a bench ran on, for its JSON: machines here differ by 2x in speed from day to day
(and in instruction sets), so a figure compares only with figures from the same machine."""
from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:  # not Linux
        return platform.processor()


def describe() -> dict:
    return {"cpus": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform(),
            "python": platform.python_version()}
