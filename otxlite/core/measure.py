"""Measuring on this machine: timings with their spread, and what the CPU can do (shared by ``otxlite
benchmark`` and ``scripts/benchmark.py``)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

ISA_FLAGS = {"AVX2": ("avx2",), "AVX-512": ("avx512f",), "AVX-512 VNNI": ("avx512_vnni",),
             "AVX-VNNI": ("avx_vnni",), "AVX-512 BF16": ("avx512_bf16",), "AMX": ("amx_tile", "amx_int8", "amx_bf16")}


def spread(values: list[float], digits: int = 2) -> dict[str, Any]:
    """Median and 10th/90th percentiles of ``values``."""
    import numpy as np

    array = np.asarray(values, dtype=float)
    median, p10, p90 = (float(np.percentile(array, q)) for q in (50, 10, 90))
    return dict(median=round(median, digits), p10=round(p10, digits), p90=round(p90, digits), n=len(values))


def time_calls(call: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``call`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def cpu_model_and_flags() -> tuple[str, dict[str, bool]]:
    """The CPU's model name and which of the ISA extensions that matter for inference it has."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name in ("", platform.machine(), platform.processor()):
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return name, {label: any(flag in flags for flag in names) for label, names in ISA_FLAGS.items()}


def usable_cores() -> int:
    """The cores this process may run on (its affinity), else every core."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_info(packages: tuple[str, ...]) -> dict[str, Any]:
    """What a benchmark result must say about the machine: CPU, cores, ISA flags, the versions of ``packages``,
    the platform and the load average when it started."""
    import importlib.metadata as metadata

    cpu, flags = cpu_model_and_flags()
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return dict(cpu=cpu, cpu_count=os.cpu_count(), usable_cores=usable_cores(), flags=flags,
                platform=platform.platform(), python=platform.python_version(), versions=versions,
                load_average_at_start=[round(x, 2) for x in os.getloadavg()])
