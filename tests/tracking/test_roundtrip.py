"""Property test: what is logged comes back exactly through ``Api().runs()[0].history()``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runfleet

SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 0.1, 1e308, -0.0, 5e-324, 1.0]

plain_floats = st.one_of(st.sampled_from(SPECIAL_FLOATS), st.floats(allow_nan=True))
numpy_values = st.one_of(
    st.floats(width=32, allow_nan=True).map(np.float32),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(np.int64),
    st.booleans().map(np.bool_),
)
torch_values = st.one_of(
    st.floats(width=32, allow_nan=False).map(lambda f: torch.tensor(f)),
    st.integers(min_value=-(2**62), max_value=2**62).map(lambda i: torch.tensor(i)),
    st.booleans().map(lambda b: torch.tensor(b)),
)
any_value = st.one_of(plain_floats, st.integers(min_value=-(2**63), max_value=2**63 - 1),
                      st.booleans(), st.text(max_size=20), numpy_values, torch_values)


def expected(value: Any) -> Any:
    """The Python value the store must give back for ``value``."""
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) ==
                                                      math.copysign(1, b))
    return type(a) is type(b) and a == b


def as_python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), any_value, min_size=1),
                min_size=1, max_size=8))
def test_logged_values_come_back_exactly(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    home = tmp_path / f"h{abs(hash(repr(rows)))}"
    run = runfleet.init(project="rt", dir=home)
    for row in rows:
        runfleet.log(row)
    runfleet.finish()
    history = runfleet.Api(home).runs("rt", filters={"id": run.id})[0].history()
    assert history["_step"].tolist() == list(range(len(rows)))
    for step, row in enumerate(rows):
        for key in ("a", "b", "c"):
            got = as_python(history[key].iloc[step]) if key in history else None
            if key in row:
                want = expected(row[key])
                assert same(got, want) and type(got) is type(want), (key, step, got, want)
            else:
                assert got is None or got is pd.NA or (isinstance(got, float) and math.isnan(got))


def test_named_special_values(home: Path) -> None:
    values = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "tenth": 0.1,
              "huge": 1e308, "f32": np.float32(0.1), "i64": np.int64(2**62 + 1),
              "t0": torch.tensor(2.5), "flag": True, "word": "hello"}
    with runfleet.init(project="special", dir=home):
        runfleet.log(values)
    row = runfleet.Api(home).runs("special")[0].history().iloc[0]
    assert math.isnan(row["nan"]) and row["inf"] == math.inf and row["ninf"] == -math.inf
    assert row["tenth"] == 0.1 and row["huge"] == 1e308
    assert row["f32"] == float(np.float32(0.1)) and row["i64"] == 2**62 + 1
    assert row["t0"] == 2.5
    assert bool(row["flag"]) is True and isinstance(row["flag"], (bool, np.bool_))
    assert row["word"] == "hello"
