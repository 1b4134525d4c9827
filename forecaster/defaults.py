"""Settings derived from the data when they are not given: what M4 Hourly taught, for any frequency.

`LSTMForecaster.fit` calls `derive` for every parameter left at None (a config is silent about it):

- ``network`` (no ``[network]`` section): our LSTM (64 units, head 128) with the **seasonal skip** over
  the frequency's seasonal periods that fit the input window (hourly: a day and a week, blended;
  daily: a week; monthly: a year; quarterly: a year; yearly and unknown: the last value) and
  **window normalisation** ("standard": each window re-centred on its last season, divided by its
  spread). On M4 Hourly these took validation OWA from 0.767 (plain LSTM) to 0.474
  (docs/accuracy.md, rounds 1-2: runs A and R).
- ``input_size``: ``max(2 horizons, the longest period, 3 shortest periods)``: hourly h=48 -> 168,
  monthly h=18 -> 36, quarterly h=8 -> 16, yearly h=6 -> 12; but no longer than the median series
  can fill after fit's holdout and one horizon of targets (``median length - 2 horizons``, not below
  one horizon or two seasons): short series make short windows, and periods longer than the window
  are left out of the skip.
- ``max_windows_per_series`` and ``epochs``, from the **training budget** of one fit in work units,
  ``budget_windows`` window-epochs (windows seen in training, summed over epochs; an ensemble's members
  share it), never from a clock: the same data and seed train the same weights on an idle and on a
  loaded machine. Its default is `BUDGET_WINDOW_STEPS` input steps over the window, ``E = 108e6 /
  input_size`` (642,857 at hourly's 168 steps, twice what the former 150 s time budget bought on the
  2-core development machine: on M4 Hourly's validation windows twice the windows per series lowered
  OWA at each seed tried, by more than the seeds' ensembles at that cost; docs/accuracy.md, "M4 Hourly,
  eighth session"; data whose series are short, as M1's and M3's, use every window for the most epochs
  within either budget). With every window
  for ``MIN_EPOCHS`` epochs within ``E``: every window, and as many epochs as fit, up to
  ``MAX_EPOCHS``; else ``MIN_EPOCHS`` epochs and the largest per-series cap on windows that fits.
  Early stopping on the validation loss still ends training sooner (it is deterministic too).
- ``weight_average``: the span in epochs of the moving average of the steps' weights a fit keeps
  (`forecaster.models.averaging`): `WEIGHT_AVERAGE_EPOCHS` where the network is derived, else 0 (the
  last step's weights, as a network given in ``[network]`` always trained).
- the **combination** ``combine = "auto"`` takes unless the network alone is far better on the fit's
  holdout (`default_combination`, by the data's seasonal period): on seasonal data the network with the
  optimised Theta models and the seasonal state-space exponential smoothing; on data without a season
  (yearly, and frequencies whose seasonal period is 1) the same and two random walks with a robust drift
  (docs/accuracy.md: chosen on the development suite's validation windows, where the robust trends
  lowered the yearly and other sets' MASE and raised the seasonal ones'). On data without a season a
  training run then drops the network from that combination where the backtest's windows score the
  statistical members' mean alone lower by more than `NETWORK_REVIEW_MARGIN` (`reviews_network`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from forecaster.data.frequency import seasonal_periods
from forecaster.data.windows import window_ends
from forecaster.models.combination import AUTO
from forecaster.models.network_spec import NetworkSpec

MIN_EPOCHS, MAX_EPOCHS = 10, 30
# The default budget of one fit, in window-epochs times input steps: twice what 135 s of epochs bought at
# the cost below (the former 150 s time budget less 15 s of validation, windows and graph building).
BUDGET_WINDOW_STEPS = 108_000_000
# Seconds per window-epoch per input step on the 2-core development machine (M4 Hourly, 64 units): only
# to tell users what a budget is expected to take (`expected_seconds`); it never steers training.
SECONDS_PER_WINDOW_STEP = 2.5e-6

#: The span in epochs of the weights' moving average where the network is derived (docs/accuracy.md,
#: "M4 Hourly, seventh session"): on M4 Hourly's validation windows it lowered OWA at every seed tried
#: (seeds 0 / 2 / 1000: 0.473 / 0.493 / 0.514 -> 0.460 / 0.483 / 0.477, -0.020 on average) for
#: about 1 ms of CPU a step; a span of 3 epochs was worse than none (seed 0: 0.476).
WEIGHT_AVERAGE_EPOCHS = 1.0


#: The combination "auto" takes on data whose seasonal period is 1 (yearly, and steps such as 2D or 7min):
#: `AUTO`'s (the network, OTM, DOTM, AETS) and the robust trends of the whole series and of its last 8
#: values. On the development suite's validation windows (2026-12-06, third session) it lowered `AUTO`'s
#: MASE by 7.1 % on M1 Yearly, 1.7 % on M3 Yearly and 1.9 % on M3 Other, and the statistical members'
#: mean was at or below theirs without the robust trends at each of three origins on the three sets
#: (dropping AETS did better on the last window and worse on M3 Yearly's earlier ones); the robust
#: trends raised the seasonal sets' MASE by 1.6-4.7 %, which keep `AUTO`.
NON_SEASONAL_COMBINATION = "otm+dotm+aets+rtrend+rtrend8"


def default_combination(season: int) -> str:
    """The named combination ``combine = "auto"`` takes for data of seasonal period ``season``, unless
    the network alone is far better on the fit's holdout (`forecaster.models.combination.choose`)."""
    return NON_SEASONAL_COMBINATION if int(season) <= 1 else AUTO


#: How much lower (relative MASE) the mean of the statistical members alone must score than the default
#: combination with the network on the backtest's windows for "auto" to drop the network, on data
#: whose seasonal period is 1 (`reviews_network`). Those windows are out of sample for the backtest's
#: network, unlike the fit's holdout, which its early stopping watched (`combination.choose`). On the
#: development suite's validation windows (2026-12-06, fourth session) the mean without the network
#: was 4.2 % lower there on M1 Yearly (dropping it lowered the validation MASE by 4.9 %) and 0.3-0.4 %
#: on M3 Yearly and Other (where dropping it raised it by 0.5-0.8 %): any margin from 0.5 % to 4 %
#: makes the same choices; with none, the network was dropped on all three.
NETWORK_REVIEW_MARGIN = 0.02


def reviews_network(season: int) -> bool:
    """Whether ``combine = "auto"`` puts the network's place in the combination to the backtest's
    windows (`NETWORK_REVIEW_MARGIN`) on data of seasonal period ``season``: on data without a season,
    where the network was the weak member of short yearly series (M1 Yearly) and a good one elsewhere
    (M3 Yearly and Other), and the fit's holdout could not tell the two apart (docs/accuracy.md)."""
    return int(season) <= 1


def default_budget(input_size: int) -> int:
    """The window-epochs of one fit when ``budget_windows`` is not given (`BUDGET_WINDOW_STEPS`)."""
    return max(BUDGET_WINDOW_STEPS // max(int(input_size), 1), 1)


def expected_seconds(budget_windows: int, input_size: int) -> float:
    """About how long a budget's epochs take on 2 cores (for messages and docs; never for training)."""
    return budget_windows * input_size * SECONDS_PER_WINDOW_STEP


@dataclass(frozen=True)
class Derived:
    """The settings a fit uses, and which of them were derived (not given)."""

    network: NetworkSpec
    input_size: int
    max_windows_per_series: int | None
    epochs: int
    derived: tuple[str, ...]
    budget_windows: int | None = None  # the window-epochs budget of the fit (None: saved before it existed)
    weight_average: float = 0.0  # the weights' moving average's span in epochs (0: saved before it existed)

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network.to_dict(), "input_size": self.input_size,
                "max_windows_per_series": self.max_windows_per_series, "epochs": self.epochs,
                "derived": list(self.derived), "budget_windows": self.budget_windows,
                "weight_average": self.weight_average}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Derived:
        return cls(NetworkSpec.from_dict(data["network"]), int(data["input_size"]),
                   data["max_windows_per_series"], int(data["epochs"]), tuple(data["derived"]),
                   data.get("budget_windows"), float(data.get("weight_average", 0.0)))

    def params(self) -> dict[str, Any]:
        """Flat ``derived.<name>`` values for MLflow (the network's keys as ``network.<key>``)."""
        out: dict[str, Any] = {f"network.{k}": v for k, v in self.network.to_dict().items()}
        out.update(input_size=self.input_size, max_windows_per_series=self.max_windows_per_series,
                   epochs=self.epochs, budget_windows=self.budget_windows, weight_average=self.weight_average)
        return {**{f"resolved.{k}": v for k, v in out.items()}, "resolved.derived": ",".join(self.derived)}


@dataclass(frozen=True)
class SeriesRules:
    """How a fit treats each series by its length: the one statement of the short-series rules, read
    by the forecaster's fit and by the data report (`LSTMForecaster.series_rules` makes it)."""

    input_size: int
    min_history: int
    horizon: int

    def forecast_by_network(self, readings: Any) -> np.ndarray:
        """Series the network forecasts, by their counts of observed readings (blanks, filled or masked,
        are none); the others get the seasonal-naive fallback."""
        return np.asarray(readings) >= self.min_history

    def trainable(self, lengths: Any) -> np.ndarray:
        """Series that give at least one training window and its targets."""
        return np.asarray(lengths) >= self.min_history + self.horizon

    def padded(self, lengths: Any) -> np.ndarray:
        """Trainable series whose windows, less fit's validation holdout, are left-padded and masked."""
        lengths = np.asarray(lengths)
        return self.trainable(lengths) & (lengths < self.input_size + 2 * self.horizon)


# The largest share of the median series that the backtest may hold back for the final fit to go on
# from the backtest model under final_fit = "auto" (chosen on validation windows: docs/accuracy.md).
WARM_FINAL_MAX_SHARE = 0.2


def warm_final_fit(final_fit: str, held_back: int, lengths: np.ndarray) -> bool:
    """Whether the pipeline's final fit goes on from the backtest model (else it refits from scratch).

    ``"auto"``: when the steps the backtest model did not see (``held_back``, its windows times their
    spacing) are at most `WARM_FINAL_MAX_SHARE` of the median series; a few epochs then catch up with
    what is new. On short series (yearly data, say) the backtest model missed too much of each.
    """
    if final_fit != "auto":
        return final_fit == "warm"
    return bool(len(lengths)) and held_back <= WARM_FINAL_MAX_SHARE * float(np.median(lengths))


def default_input_size(freq: str, horizon: int, lengths: np.ndarray | None = None) -> int:
    """``max(2 horizons, the longest period, 3 shortest periods)``, cut to what the median series can fill
    after the validation holdout and one horizon of targets (not below one horizon or two seasons)."""
    periods = seasonal_periods(freq)
    wanted = max(2 * horizon, max(periods), 3 * min(periods))
    if lengths is None or not len(lengths):
        return wanted
    room = int(np.median(lengths)) - 2 * horizon
    return min(wanted, max(room, horizon, 2 * min(periods)))


def default_network(freq: str, input_size: int) -> NetworkSpec:
    periods = tuple(p for p in seasonal_periods(freq) if p <= input_size) or (1,)
    return NetworkSpec(seasonal_skip=True, window_norm="standard",
                       skip_period=periods if len(periods) > 1 else periods[0])


def windows_available(lengths: np.ndarray, input_size: int, horizon: int, min_context: int) -> np.ndarray:
    """Training windows each series gives after fit's validation holdout (its last horizon): the window
    index's own count (`forecaster.data.windows.window_ends`: full windows, left-padded ones only in
    series too short for any). Windows whose targets are all missing, which the index drops, are counted."""
    e_min, e_max = window_ends(np.asarray(lengths) - horizon, input_size, horizon, min_context)
    return np.maximum(e_max - e_min + 1, 0)


def derive(freq: str, horizon: int, lengths: np.ndarray, min_context: int, *, network: NetworkSpec | None,
           input_size: int | None, max_windows_per_series: int | None, epochs: int | None,
           budget_windows: int | None = None, ensemble: int = 1,
           weight_average: float | None = None) -> Derived:
    """Fill the settings left at None (module doc); ``lengths`` are the training series' lengths.

    Decided from the data's size alone, before training: each of ``ensemble`` members gets an equal
    share of ``budget_windows`` (default `default_budget`)."""
    derived = []
    if input_size is None:
        input_size = default_input_size(freq, horizon, lengths)
        derived.append("input_size")
    if network is None:
        network = default_network(freq, input_size)
        derived.append("network")
    if weight_average is None:
        weight_average = WEIGHT_AVERAGE_EPOCHS if "network" in derived else 0.0
        derived.append("weight_average")
    budget = int(budget_windows) if budget_windows is not None else default_budget(input_size)
    if epochs is None or max_windows_per_series is None:
        available = windows_available(np.asarray(lengths), input_size, horizon, min_context)
        affordable = max(budget // max(int(ensemble), 1), 1)
        total = int(available.sum())
        if max_windows_per_series is None:
            if total * MIN_EPOCHS <= affordable:
                max_windows_per_series = max(int(available.max()), 1) if len(available) else 1
            else:
                max_windows_per_series = _cap(available, affordable / MIN_EPOCHS)
            derived.append("max_windows_per_series")
        if epochs is None:
            used = int(np.minimum(available, max_windows_per_series).sum())
            epochs = int(np.clip(affordable // max(used, 1), MIN_EPOCHS, MAX_EPOCHS))
            derived.append("epochs")
    return Derived(network, int(input_size), max_windows_per_series, int(epochs), tuple(derived), budget,
                   float(weight_average))


def _cap(available: np.ndarray, windows: float) -> int:
    """The largest per-series cap W with ``sum(min(available, W)) <= windows`` (at least 1)."""
    lo, hi = 1, max(int(available.max()), 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if np.minimum(available, mid).sum() <= windows:
            lo = mid
        else:
            hi = mid - 1
    return lo
