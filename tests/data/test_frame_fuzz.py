"""Property: no frame, however malformed, makes the frame checks raise anything but our own errors."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecaster.data.schema import Columns
from forecaster.data.validation import validate_frame
from forecaster.errors import ForecasterError

_IDS = st.one_of(st.sampled_from(["A", "B", "C"]), st.integers(-2, 2), st.none(), st.floats(allow_nan=True),
                 st.booleans(), st.text(max_size=3))
_TIMES = st.one_of(
    st.datetimes(min_value=pd.Timestamp("2000-01-01").to_pydatetime(),
                 max_value=pd.Timestamp("2000-01-03").to_pydatetime()),
    st.sampled_from(["2024-01-01 00:00", "2024-01-01 01:00+01:00", "2024-01-01T02:00Z", "yesterday", "",
                     "2024-13-45", "2024-01-01 03:00-05:00"]),
    st.integers(-5, 5), st.none(), st.floats(allow_nan=True),
)
_VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10), st.none(),
                    st.sampled_from(["1.5", "x", ""]), st.booleans())


@st.composite
def frames(draw):
    n = draw(st.integers(0, 30))
    columns = {}
    if draw(st.booleans()) or n:
        columns["unique_id"] = draw(st.lists(_IDS, min_size=n, max_size=n))
    if draw(st.integers(0, 9)) > 0:
        if draw(st.booleans()):
            start = draw(st.sampled_from(["2024-01-01", "2024-03-31 00:00"]))
            freq = draw(st.sampled_from(["h", "D", "15min"]))
            columns["ds"] = list(pd.date_range(start, periods=n, freq=freq))
        else:
            columns["ds"] = draw(st.lists(_TIMES, min_size=n, max_size=n))
    if draw(st.integers(0, 9)) > 0:
        columns["y"] = draw(st.lists(_VALUES, min_size=n, max_size=n))
    if draw(st.booleans()):
        columns["extra"] = draw(st.lists(_VALUES, min_size=n, max_size=n))
    frame = pd.DataFrame(columns)
    if draw(st.booleans()) and "ds" in frame and n:
        frame = frame.sample(frac=1.0, random_state=draw(st.integers(0, 5)))
    return frame


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames(), freq=st.sampled_from([None, "h", "D", "nonsense"]),
       policy=st.sampled_from(["error", "fill", "mask"]), min_length=st.integers(1, 6))
def test_frame_checks_raise_only_our_errors(frame, freq, policy, min_length):
    try:
        checked = validate_frame(frame, Columns(), freq=freq, missing_policy=policy, min_length=min_length)
    except ForecasterError:
        return
    # When the checks pass, every series of the input is in the output: none dropped silently.
    assert checked.frame["unique_id"].nunique() == frame["unique_id"].astype(str).nunique()
