"""System metrics are sampled in the background under ``system/`` keys."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

import runfleet
from runfleet.tracking.system import sample


def test_sample_has_cpu_and_memory() -> None:
    s = sample(psutil.Process())
    assert 0.0 <= s["system/memory_percent"] <= 100.0
    assert s["system/proc_rss_gb"] > 0.0
    assert "system/cpu_percent" in s


def test_monitor_logs_system_stream(home: Path) -> None:
    run = runfleet.init(project="sys", dir=home, system_metrics=True, system_interval=0.2)
    for i in range(3):
        runfleet.log({"loss": float(i)})
    time.sleep(1.8)
    runfleet.finish()
    r = runfleet.Api(home).run("sys", run.id)
    assert "system/memory_percent" in r.keys(stream="system")
    assert all(not k.startswith("system/") for k in r.keys(stream="default"))
    sys_hist = r.history(stream="system")
    assert len(sys_hist) >= 3
    assert sys_hist["_step"].tolist() == list(range(len(sys_hist)))
    assert r.history()["loss"].tolist() == [0.0, 1.0, 2.0]  # user steps are untouched


def test_system_samples_do_not_move_the_run_step(home: Path) -> None:
    runfleet.init(project="sys", dir=home, id="s", system_metrics=True, system_interval=0.05)
    runfleet.log({"loss": 1.0})
    runfleet.log({"loss": 0.5})
    time.sleep(1.5)
    runfleet.finish()
    r = runfleet.Api(home).run("sys", "s")
    assert len(r.history(stream="system")) > 3
    assert r.last_step == 1
    again = runfleet.init(project="sys", dir=home, id="s", resume="allow", system_metrics=False)
    assert again.step == 2
    again.finish()
