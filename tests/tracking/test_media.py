"""Images, tables and histograms are saved as files with typed rows, readable via the Api."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image as PILImage

import runfleet


def test_media_round_trip(home: Path, tmp_path: Path) -> None:
    pixels = (np.arange(12 * 10 * 3) % 255).astype(np.uint8).reshape(12, 10, 3)
    png = tmp_path / "given.png"
    PILImage.fromarray(pixels).save(png)
    run = runfleet.init(project="m", dir=home)
    runfleet.log({"img": runfleet.Image(pixels, caption="raw")})
    runfleet.log({"img": runfleet.Image(torch.zeros(3, 4, 5)),
                  "from_path": runfleet.Image(png),
                  "from_pil": runfleet.Image(PILImage.fromarray(pixels)),
                  "table": runfleet.Table(columns=["a", "b"], data=[[1, "x"], [2.5, None]]),
                  "hist": runfleet.Histogram(np.arange(100), num_bins=4),
                  "loss": 0.5})
    runfleet.finish()
    r = runfleet.Api(home).run("m", run.id)
    media = r.media()
    assert sorted((m["key"], m["step"]) for m in media) == sorted(
        [("img", 0), ("img", 1), ("from_path", 1), ("from_pil", 1), ("table", 1), ("hist", 1)])
    by = {(m["key"], m["step"]): m for m in media}
    assert np.array_equal(np.asarray(by[("img", 0)]["value"]), pixels)
    assert by[("img", 0)]["meta"]["caption"] == "raw"
    assert np.asarray(by[("img", 1)]["value"]).shape == (4, 5, 3)
    assert np.array_equal(np.asarray(by[("from_path", 1)]["value"]), pixels)
    assert np.array_equal(np.asarray(by[("from_pil", 1)]["value"]), pixels)
    table = by[("table", 1)]["value"]
    assert isinstance(table, pd.DataFrame) and table["a"].tolist() == [1, 2.5]
    hist = by[("hist", 1)]["value"]
    assert hist.counts == [25, 25, 25, 25] and hist.bins[0] == 0.0 and hist.bins[-1] == 99.0
    for m in media:
        assert Path(m["path"]).is_file()
        assert Path(m["path"]).resolve().is_relative_to((home / "media").resolve())
    # The history holds typed references to the files, next to ordinary metrics.
    h = r.history()
    assert h.loc[1, "loss"] == 0.5
    ref = h.loc[1, "hist"]
    assert isinstance(ref, dict) and ref["_type"] == "histogram"


def test_media_objects_copy_their_data(home: Path) -> None:
    pixels = np.zeros((4, 4), dtype=np.uint8)
    img = runfleet.Image(pixels)
    pixels[:] = 255
    run = runfleet.init(project="m", dir=home)
    runfleet.log({"img": img})
    runfleet.finish()
    stored = runfleet.Api(home).run("m", run.id).media("img")[0]["value"]
    assert np.asarray(stored).max() == 0


def test_bad_media_is_rejected_when_built() -> None:
    with pytest.raises(ValueError, match="shape"):
        runfleet.Image(np.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="does not exist"):
        runfleet.Image("/no/such/file.png")
    with pytest.raises(ValueError, match="row 0 has 1 values but there are 2 columns"):
        runfleet.Table(columns=["a", "b"], data=[[1]])
    with pytest.raises(ValueError, match="num_bins"):
        runfleet.Histogram([1, 2], num_bins=0)


def test_media_paths_stay_inside_the_home(home: Path) -> None:
    run = runfleet.init(project="../../escape", dir=home, id="x")
    runfleet.log({"../../k": runfleet.Histogram([1, 2, 3])})
    runfleet.finish()
    (item,) = runfleet.Api(home).run("../../escape", run.id).media()
    assert Path(item["path"]).resolve().is_relative_to((home / "media").resolve())
