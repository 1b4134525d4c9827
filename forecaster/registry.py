"""Model registry steps: register a version, make it `challenger`, promote it to `champion` by rule."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlflow import MlflowClient

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
        }


def decide(metric: str, margin: float, challenger: float, baseline: float, champion: float | None,
           champion_version: str | None) -> PromotionDecision:
    """Promote only if the challenger beats seasonal naive and the champion by the relative ``margin``."""
    def beats(a: float, b: float) -> bool:
        return math.isfinite(a) and a < b * (1.0 - margin)

    reasons = []
    if not beats(challenger, baseline):
        reasons.append(f"{metric} {challenger:.4g} does not beat seasonal naive {baseline:.4g} by {margin:.1%}")
    if champion is not None and not beats(challenger, champion):
        reasons.append(f"{metric} {challenger:.4g} does not beat champion v{champion_version} {champion:.4g} "
                       f"by {margin:.1%}")
    promoted = not reasons
    reason = "; ".join(reasons) if reasons else (
        f"{metric} {challenger:.4g} beats seasonal naive {baseline:.4g}"
        + ("" if champion is None else f" and champion v{champion_version} {champion:.4g}"))
    return PromotionDecision(promoted, metric, margin, challenger, baseline, champion, champion_version, reason)


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


def apply_decision(client: MlflowClient, name: str, version: str, decision: PromotionDecision) -> None:
    """Tag the version with the decision, then move aliases: `challenger` always, `champion` if promoted.

    Tags go first, so that a version never holds `champion` without the figures that put it there.
    """
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
