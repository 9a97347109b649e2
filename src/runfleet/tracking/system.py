"""Background sampling of system metrics: CPU, memory and, when present, NVIDIA GPUs.

Samples are logged under ``system/...`` keys with their own step (the sample index), every
``interval`` seconds, by a daemon thread. GPU figures need ``nvidia-ml-py``
(``pip install runfleet[gpu]``) and a driver; without them only CPU and memory are sampled.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import psutil

DEFAULT_INTERVAL_S = 15.0


def _gpu_handles() -> tuple[Any, list[Any]]:
    try:
        import pynvml
    except ImportError:
        return None, []
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        return pynvml, [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    except Exception:  # no driver, no device: GPU sampling is simply off
        return None, []


def sample(process: psutil.Process, nvml: Any = None, handles: list[Any] | None = None
           ) -> dict[str, float]:
    """One sample of system metrics as a flat dict of floats."""
    vm = psutil.virtual_memory()
    out: dict[str, float] = {
        "system/cpu_percent": float(psutil.cpu_percent(interval=None)),
        "system/memory_percent": float(vm.percent),
        "system/memory_used_gb": vm.used / 1e9,
        "system/proc_rss_gb": process.memory_info().rss / 1e9,
        "system/proc_cpu_percent": float(process.cpu_percent(interval=None)),
    }
    for i, h in enumerate(handles or []):
        with contextlib.suppress(Exception):
            util = nvml.nvmlDeviceGetUtilizationRates(h)
            mem = nvml.nvmlDeviceGetMemoryInfo(h)
            out[f"system/gpu.{i}.utilization"] = float(util.gpu)
            out[f"system/gpu.{i}.memory_percent"] = 100.0 * mem.used / max(mem.total, 1)
            out[f"system/gpu.{i}.memory_used_gb"] = mem.used / 1e9
        with contextlib.suppress(Exception):
            out[f"system/gpu.{i}.power_w"] = nvml.nvmlDeviceGetPowerUsage(h) / 1000.0
        with contextlib.suppress(Exception):
            out[f"system/gpu.{i}.temperature_c"] = float(
                nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))
    return out


class SystemMonitor:
    """Samples system metrics every ``interval`` seconds and hands them to ``emit``."""

    def __init__(self, emit: Callable[[int, dict[str, Any]], None],
                 interval: float = DEFAULT_INTERVAL_S) -> None:
        if interval <= 0:
            raise ValueError(f"system metrics interval must be > 0, got {interval}")
        self.interval = interval
        self._emit = emit
        self._stop = threading.Event()
        self._process = psutil.Process()
        self._thread = threading.Thread(target=self._loop, name="runfleet-system", daemon=True)

    def start(self) -> SystemMonitor:
        """Start sampling (the first sample comes after at most one second)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling; returns promptly."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def _loop(self) -> None:
        psutil.cpu_percent(interval=None)  # prime the counters
        self._process.cpu_percent(interval=None)
        nvml: Any = None
        handles: list[Any] = []
        index = 0
        while not self._stop.wait(min(1.0, self.interval) if index == 0 else self.interval):
            if index == 0:  # GPU discovery imports pynvml: not while the run is starting up
                nvml, handles = _gpu_handles()
            with contextlib.suppress(Exception):  # sampling must never disturb training
                self._emit(index, sample(self._process, nvml, handles))
                index += 1
        if nvml is not None:
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()
