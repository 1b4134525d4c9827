"""Model registry steps: register a version, make it `challenger`, promote it to `champion` by rule.

The rule compares like with like: the champion is never scored on data it was trained on. When the
new data has backtest windows that lie wholly after the champion's training data, both models are
scored on those windows; otherwise the challenger's backtest is compared with the champion's own
backtest recorded when it was trained (both out of sample, by the same protocol). ``basis`` on the
decision says which. Reading the champion, registering and moving the aliases happen under one
lock per model (`promotion_lock`), so two trainings of one model cannot both promote.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

from forecaster.ops import locks

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass
class PromotionDecision:
    """What the rule decided for a version, and the figures it decided on (lower is better)."""

    promoted: bool
    metric: str
    margin: float
    challenger: float
    baseline: float
    champion: float | None
    champion_version: str | None
    reason: str
    basis: str = ""
    challenger_on_basis: float | None = None

    def tags(self) -> dict[str, str]:
        return {
            "promotion.decision": "champion" if self.promoted else "challenger",
            "promotion.metric": self.metric,
            "promotion.margin": str(self.margin),
            "promotion.challenger_value": f"{self.challenger:.6g}",
            "promotion.seasonal_naive_value": f"{self.baseline:.6g}",
            "promotion.champion_value": "" if self.champion is None else f"{self.champion:.6g}",
            "promotion.champion_version": self.champion_version or "",
            "promotion.reason": self.reason,
            "promotion.basis": self.basis,
            "promotion.challenger_value_on_basis": "" if self.challenger_on_basis is None
            else f"{self.challenger_on_basis:.6g}",
        }


def decide(metric: str, margin: float, challenger: float, baseline: float, champion: float | None,
           champion_version: str | None, basis: str = "",
           challenger_on_basis: float | None = None) -> PromotionDecision:
    """Promote only if the challenger beats seasonal naive and the champion by the relative ``margin``.

    ``challenger_on_basis`` is the challenger's figure on the windows the champion was scored on, where
    those are not its whole backtest (see the module doc); the champion comparison uses it.
    """
    def beats(a: float, b: float) -> bool:
        return math.isfinite(a) and a < b * (1.0 - margin)

    head_to_head = challenger if challenger_on_basis is None else challenger_on_basis
    reasons = []
    if not beats(challenger, baseline):
        reasons.append(f"{metric} {challenger:.4g} does not beat seasonal naive {baseline:.4g} by {margin:.1%}")
    if champion is not None and not beats(head_to_head, champion):
        reasons.append(f"{metric} {head_to_head:.4g} does not beat champion v{champion_version} {champion:.4g} "
                       f"by {margin:.1%} ({basis})")
    promoted = not reasons
    reason = "; ".join(reasons) if reasons else (
        f"{metric} {challenger:.4g} beats seasonal naive {baseline:.4g}"
        + ("" if champion is None else f" and champion v{champion_version} {champion:.4g} ({basis})"))
    return PromotionDecision(promoted, metric, margin, challenger, baseline, champion, champion_version, reason,
                             basis, challenger_on_basis)


def champion_version(client: MlflowClient, name: str) -> str | None:
    """The version holding `champion`, or None (read from the registered model: SQLite stores keep
    aliases there, not on `search_model_versions` results)."""
    try:
        aliases = client.get_registered_model(name).aliases
    except Exception:  # the model is not registered yet
        return None
    version = aliases.get(CHAMPION)
    return None if version is None else str(version)


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """The model's aliases as {alias: version string}."""
    return {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}


def apply_decision(client: MlflowClient, name: str, version: str, decision: PromotionDecision,
                   move_aliases: bool = True) -> None:
    """Tag the version with the decision, then move aliases: `challenger` always, `champion` if promoted
    (neither when ``move_aliases`` is False).

    Tags go first, so that a version never holds `champion` without the figures that put it there.
    """
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, version, key, value)
    if not move_aliases:
        return
    client.set_registered_model_alias(name, CHALLENGER, version)
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)


def _lock_path(tracking_uri: str, name: str) -> Path:
    """One lock file per (store, model): beside a SQLite store, else in the temporary folder."""
    key = hashlib.sha256(f"{tracking_uri}\0{name}".encode()).hexdigest()[:16]
    if tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri[len("sqlite:///"):]).resolve().parent / "locks"
    else:
        folder = Path(tempfile.gettempdir()) / "forecaster-locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"promotion-{key}.lock"


def promotion_lock(tracking_uri: str, name: str, timeout: float = 600.0) -> contextlib.AbstractContextManager:
    """Hold model ``name``'s promotion lock (an OS file lock: released by the kernel if we die).

    Waits up to ``timeout`` seconds for another holder, then raises `LockHeldError`. It serialises
    trainings on one machine; processes on several machines sharing one tracking server need that
    server's users to train a given model from one place (documented in the README).
    """
    return locks.hold(_lock_path(tracking_uri, name), timeout, f"model {name!r}: promotion")
