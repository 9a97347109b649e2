"""The dashboard shows what wandb code logs through runfleet: videos, audio, wandb.plot
charts (drawn from their spec, with their table), and ``run.url`` opens the run's page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import runfleet
from runfleet import wandb as shim


def _log_media_run(home: Path) -> runfleet.Run:
    frames = np.zeros((3, 3, 8, 8), dtype=np.uint8)
    frames[:, 1] = 200
    table = runfleet.Table(columns=["epoch", "acc", "name"],
                           data=[[0, 0.5, "a"], [1, 0.7, "b"], [2, 0.9, "c"]])
    run = runfleet.init(project="wb", name="media-run", dir=home, system_metrics=False)
    assert isinstance(run, runfleet.Run)
    run.log({"loss": 1.0})
    run.log({"clip": runfleet.Video(frames, fps=2),
             "tone": runfleet.Audio(np.zeros(400), sample_rate=8000),
             "acc curve": shim.plot.line(table, "epoch", "acc", title="Accuracy"),
             "by name": shim.plot.bar(table, "name", "acc"),
             "points": shim.plot.scatter(table, "epoch", "acc")})
    run.finish()
    return run


def test_run_url_opens_its_page_with_video_audio_and_charts(
        serve: Any, page: Any, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _log_media_run(home)
    srv = serve(home)
    monkeypatch.setenv("RUNFLEET_DASHBOARD_URL", srv.url)
    url = runfleet.Api(home).run("wb", run.id).url
    assert url == run.url and url.startswith(srv.url)
    page.goto(f"{url}#token={srv.token}")  # the link the run gives, plus the printed token
    page.wait_for_selector("#detail-name")
    assert page.inner_text("#detail-name") == "media-run"
    page.wait_for_function("() => [...document.querySelectorAll('.media-video img')]"
                           ".some(i => i.complete && i.naturalWidth === 8)")
    page.wait_for_selector(".media-audio audio[src*='/api/media/file']", state="attached")
    assert page.evaluate("fetch(document.querySelector('.media-audio audio').src)"
                         ".then(r => r.headers.get('content-type'))") == "audio/wav"
    for kind, points in (("line", "3"), ("bar", "3"), ("scatter", "3")):
        page.wait_for_selector(f"canvas.wandb-chart[data-chart='{kind}'][data-points='{points}']")
    chart = page.locator("figure.media[data-key='acc curve']")
    assert "Accuracy" in chart.inner_text()
    assert chart.locator(".media-table td", has_text="0.7").count() == 1  # the table too
