"""Segment encoding keeps every value bit for bit."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from runfleet.store import codec


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=300))
def test_float_values_round_trip_bit_for_bit(values: list[float]) -> None:
    blob = codec.encode_values(codec.FLOAT, values)
    back = codec.decode_values(codec.FLOAT, blob, len(values))
    assert np.asarray(values, dtype=np.float64).tobytes() == back.tobytes()


@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=1,
                max_size=300))
def test_int_values_round_trip(values: list[int]) -> None:
    blob = codec.encode_values(codec.INT, values)
    assert codec.decode_values(codec.INT, blob, len(values)).tolist() == values


@given(st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=300))
def test_steps_round_trip(steps: list[int]) -> None:
    arr = np.array(steps, dtype=np.int64)
    assert codec.decode_steps(codec.encode_steps(arr)).tolist() == steps


def test_times_keep_microseconds() -> None:
    times = np.array([1.7e9 + 0.123456, 1.7e9 + 0.5, 1.7e9 + 1.0])
    back = codec.decode_times(codec.encode_times(times))
    assert np.max(np.abs(back - times)) < 1e-6


def test_json_values_keep_text_none_and_big_ints() -> None:
    values = ["a", None, 2**70, "ünïcode", ""]
    back = codec.decode_values(codec.JSON, codec.encode_values(codec.JSON, values), 5)
    assert back.tolist() == values


def test_bools_round_trip() -> None:
    values = [True, False, True]
    back = codec.decode_values(codec.BOOL, codec.encode_values(codec.BOOL, values), 3)
    assert back.tolist() == values and back.dtype == bool


def test_steady_steps_compress_to_almost_nothing() -> None:
    steps = np.arange(4096, dtype=np.int64)
    assert len(codec.encode_steps(steps)) < 400  # 32 KiB raw
    assert math.isclose(codec.decode_steps(codec.encode_steps(steps))[-1], 4095)
