"""The dashboard in a real browser (Playwright driving Debian's Chromium, headless).

Runs are written by real ``runfleet.init/log`` processes; the page is served by uvicorn on
a free port. A screenshot of the main view is saved to ``test-artifacts/``.
"""

from __future__ import annotations

import csv
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import runfleet
from runfleet.dashboard.server import BackgroundServer
from tests.conftest import PYTHON, subprocess_env
from tests.dashboard.conftest import ARTIFACTS
from tests.dashboard.helpers import DEMO_RUNS, SPIKE_SCRIPT, run_script

LOSS = ".chart[data-key='loss']"


def _open(page: Any, srv: BackgroundServer, project: str = "demo") -> None:
    page.goto(srv.page_url(project))
    page.wait_for_selector(f"{LOSS}[data-drawn='1']", timeout=20_000)


def _chart(page: Any, key: str, field: str) -> str:
    return str(page.get_attribute(f".chart[data-key='{key}']", f"data-{field}"))


def _wait_chart(page: Any, key: str, field: str, value: str, timeout: float = 10_000) -> None:
    page.wait_for_function(
        "([key, field, value]) => document.querySelector(`.chart[data-key='${key}']`)"
        "?.dataset[field] === value", arg=[key, field, value], timeout=timeout)


def test_page_lists_runs_and_draws_one_series_per_run(serve: Any, page: Any,
                                                      demo_home: Path) -> None:
    srv = serve(demo_home)
    _open(page, srv)
    assert page.locator("#run-list .run-name").all_inner_texts() == [n for n, _, _ in DEMO_RUNS]
    for key in ("loss", "acc", "epoch"):
        _wait_chart(page, key, "drawn", "1")
        assert _chart(page, key, "runs") == "4" and _chart(page, key, "series") == "4"
    assert page.locator("#live-status[data-status='live']").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-main.png"))


def test_filtering_and_grouping_change_what_is_drawn(serve: Any, page: Any,
                                                     demo_home: Path) -> None:
    _open(page, serve(demo_home))
    page.fill("#run-search", "/run-[01]$/")
    _wait_chart(page, "loss", "runs", "2")
    assert page.locator("#run-list li.run").count() == 2
    page.fill("#run-search", "")
    _wait_chart(page, "loss", "runs", "4")
    page.fill("#run-filter", "config.opt=adam")
    page.press("#run-filter", "Enter")
    _wait_chart(page, "loss", "runs", "2")
    page.click(".chip-x")
    _wait_chart(page, "loss", "runs", "4")
    page.select_option("#group-by", "opt")  # two groups: a mean line and a band each
    _wait_chart(page, "loss", "series", "2")
    page.select_option("#group-by", "")
    _wait_chart(page, "loss", "series", "4")
    page.uncheck("#run-list li.run >> nth=0 >> input[type=checkbox]")
    _wait_chart(page, "loss", "runs", "3")
    page.select_option("#smoothing", "ema")  # raw (faint) + smoothed line per run
    _wait_chart(page, "loss", "series", "6")
    page.click("#select-none")
    page.wait_for_selector(f"{LOSS} .notice.empty")


def test_zoom_refetches_the_range_at_full_resolution(serve: Any, page: Any,
                                                     demo_home: Path) -> None:
    _open(page, serve(demo_home))
    assert _chart(page, "loss", "mode") == "buckets"
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/series" in r.url else None)
    box = page.locator(f"{LOSS} .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.40, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.46, y, steps=6)
    page.mouse.up()
    _wait_chart(page, "loss", "mode", "exact")
    assert _chart(page, "loss", "zoomed") == "1"
    zoomed = [u for u in requests if "key=loss" in u and "start=" in u and "end=" in u]
    assert zoomed, requests
    page.focus(LOSS)
    page.keyboard.press("Escape")
    _wait_chart(page, "loss", "mode", "buckets")


def test_a_live_run_appears_within_two_seconds_without_reload(serve: Any, page: Any,
                                                              demo_copy: Path) -> None:
    _open(page, serve(demo_copy))
    page.evaluate("window.__notReloaded = true")
    script = textwrap.dedent("""
        import sys, time, runfleet
        runfleet.init(project="demo", name="live-run", dir=sys.argv[1], system_metrics=False,
                      config={"lr": 0.5, "opt": "adam", "layers": 9})
        runfleet.log({"loss": 2.0, "acc": 0.0, "epoch": 0.0})
        print("started", flush=True)
        for i in range(1, 400):
            time.sleep(0.02)
            runfleet.log({"loss": 2.0 / (1 + i), "acc": i / 400, "epoch": i / 1000})
        runfleet.finish()
    """)
    proc = subprocess.Popen([PYTHON, "-c", script, str(demo_copy)], stdout=subprocess.PIPE,
                            text=True, env=subprocess_env())
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        started = time.monotonic()
        _wait_chart(page, "loss", "runs", "5", timeout=5_000)
        elapsed = time.monotonic() - started
        print(f"live run drawn {elapsed:.2f} s after its first log() call")
        assert elapsed <= 2.0, f"the live run took {elapsed:.2f} s to appear"
        assert "live-run" in page.locator("#run-list .run-name").all_inner_texts()
        assert page.evaluate("window.__notReloaded") is True
        # From now on points arrive by SSE: the chart grows without asking for history.
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url) if "/api/series" in r.url else None)
        count = "window.__rf.charts.get('loss').data.lines.get(" \
                "window.__rf.state.runs.find(r => r.name === 'live-run').id).x.length"
        before = page.evaluate(count)
        page.wait_for_function(f"() => {count} > {before} + 10", timeout=5_000)
        assert requests == []
    finally:
        proc.terminate()  # the checks are done; no need to wait for the whole run
        proc.wait(timeout=60)


def test_export_downloads_exact_values(serve: Any, page: Any, demo_home: Path) -> None:
    _open(page, serve(demo_home))
    with page.expect_download() as download:
        page.click("#export-csv")
    path = download.value.path()
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    api = runfleet.Api(demo_home)
    for run in api.runs("demo"):
        expected = run.history(keys=["loss"])["loss"].tolist()
        got = [float(r["value"]) for r in rows if r["run_id"] == run.id and r["key"] == "loss"]
        assert got == expected  # bit for bit
    api.close()


def test_a_one_point_spike_is_visible_at_default_zoom(serve: Any, page: Any,
                                                      tmp_path: Path) -> None:
    run_script(tmp_path, SPIKE_SCRIPT)  # 100,000 steps near 1.0, one of them 50.0
    _open(page, serve(tmp_path), project="spike")
    assert page.evaluate("window.__rf.charts.get('loss').yMax()") == 50.0
    assert page.evaluate("window.__rf.charts.get('loss').yScaleMax()") >= 50.0


def test_views_detail_theme_and_keyboard(serve: Any, page: Any, demo_copy: Path) -> None:
    _open(page, serve(demo_copy))
    theme = page.evaluate("document.documentElement.dataset.theme")
    page.keyboard.press("t")
    assert page.evaluate("document.documentElement.dataset.theme") != theme
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "run-search"
    page.keyboard.press("Escape")
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("2")
    page.wait_for_selector("#runs-table")
    assert page.locator("#runs-table tbody tr").count() == 4
    page.click("#runs-table button[data-field='config.lr']")
    page.wait_for_function("() => document.querySelector('#runs-table tbody tr button')"
                           "?.textContent === 'run-2'")  # lr 0.001 first
    page.keyboard.press("3")
    page.wait_for_selector("#parallel[data-lines='4']")
    page.keyboard.press("1")
    page.click("#run-list .run-name >> text=run-1")
    page.wait_for_selector("#detail-name")
    assert page.inner_text("#detail-name") == "run-1"
    assert "slow start" in page.inner_text(".alerts")
    page.wait_for_function("() => [...document.querySelectorAll('.media img')]"
                           ".some(i => i.complete && i.naturalWidth === 8)")
    page.wait_for_selector(".media-table >> text=y")
    page.fill("#detail-notes", "promising")
    page.click("#detail-save")
    page.wait_for_selector("text=Saved.")
    api = runfleet.Api(demo_copy)
    assert [r.notes for r in api.runs("demo") if r.name == "run-1"] == ["promising"]
    api.close()
    page.keyboard.press("Escape")
    page.wait_for_selector(f"{LOSS}")


def test_options_x_axis_log_scale_and_errors(serve: Any, page: Any, demo_home: Path) -> None:
    srv = serve(demo_home)
    _open(page, srv)
    page.select_option("#x-axis", "relative")
    page.wait_for_function("() => window.__rf.charts.get('loss').requests >= 2")
    _wait_chart(page, "loss", "drawn", "1")
    page.select_option("#x-axis", "epoch")
    _wait_chart(page, "loss", "runs", "4")
    page.check("#log-scale")
    _wait_chart(page, "loss", "runs", "4")
    assert page.evaluate("window.__rf.smoothing.ema([3, 3, 3], 0.9)") == \
        pytest.approx([3, 3, 3])  # debiased: no pull towards 0 at the start
    assert page.evaluate("window.__rf.smoothing.movingAverage([1, 2, 3, 4, 5], 3)") == \
        [1.5, 2, 3, 4, 4.5]
    page.route("**/api/series**", lambda route: route.fulfill(
        status=400, content_type="application/json", body='{"error": "no such thing"}'))
    page.goto(f"{srv.url}/?project=demo")  # a reload: the tab kept the token
    page.wait_for_selector(f"{LOSS} .notice.error >> text=no such thing")
    assert page.locator(f"{LOSS} button >> text=Retry").count() == 1


def test_a_dashboard_that_wants_the_token_for_reads_works_from_its_link(
        serve: Any, page: Any, browser: Any, demo_copy: Path) -> None:
    # As `runfleet show --host 0.0.0.0` serves: reads need the token too. The page sends it
    # on every call; images, the CSV download and the live stream go by the cookie.
    srv = serve(demo_copy, loopback_only=False)
    stranger = browser.new_page()  # no token: refused, with the reason on the page
    stranger.goto(f"{srv.url}/?project=demo")
    stranger.wait_for_selector("main .notice.error >> text=needs its token")
    stranger.close()
    _open(page, srv)
    assert "token" not in page.url  # out of the address bar once read
    page.wait_for_selector("#live-status[data-status='live']")
    with page.expect_download() as download:
        page.click("#export-csv")
    with open(download.value.path(), newline="") as fh:
        assert len(list(csv.DictReader(fh))) > 4 * 2000
    page.click("#run-list .run-name >> text=run-1")
    page.wait_for_function("() => [...document.querySelectorAll('.media img')]"
                           ".some(i => i.complete && i.naturalWidth === 8)")
    page.fill("#detail-notes", "from afar")
    page.click("#detail-save")
    page.wait_for_selector("text=Saved.")
    with runfleet.Api(demo_copy) as api:
        assert [r.notes for r in api.runs("demo") if r.name == "run-1"] == ["from afar"]
