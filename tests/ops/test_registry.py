"""The promotion rule on its own: beat seasonal naive and the champion by the relative margin."""

from __future__ import annotations

import math

from forecaster.ops.registry import decide


def test_promotes_when_it_beats_both():
    d = decide("mase", 0.0, challenger=0.9, baseline=1.2, champion=1.0, champion_version="3")
    assert d.promoted and "beats seasonal naive" in d.reason and "champion v3" in d.reason
    assert d.tags()["promotion.decision"] == "champion"


def test_needs_the_margin_and_is_strict():
    assert not decide("mase", 0.0, 1.0, 1.0, None, None).promoted  # a tie is not a win
    assert not decide("mase", 0.1, 0.95, 1.0, None, None).promoted  # 5 % better, 10 % asked
    assert decide("mase", 0.1, 0.89, 1.0, None, None).promoted


def test_refuses_when_worse_than_either():
    assert not decide("smape", 0.0, 10.0, 9.0, None, None).promoted
    d = decide("smape", 0.0, 8.0, 9.0, 7.5, "2")
    assert not d.promoted and "champion v2" in d.reason
    assert d.tags()["promotion.champion_value"] == "7.5"


def test_a_non_finite_score_never_promotes():
    assert not decide("mase", 0.0, math.nan, 1.0, None, None).promoted
    assert not decide("mase", -10.0, math.inf, 1.0, None, None).promoted
