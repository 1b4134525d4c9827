"""The intervals of models a `bench_dev_suite.py` run registered, scored under each calibration rule on
the part that run scored (its test part, or with ``--validate`` its validation windows): the same
model and the same forecasts, so the rule before a change can be disclosed beside the rule after it
from ONE reading (issue #27, seventh session).

Each ``FOLDER/SET`` is a copy of that run's per-set work folder (its ``artifacts/models/*/artifacts/
artifacts/forecaster``, saved by the registered model). Rules: uncalibrated, ``width_units`` (the
width corrections alone, what a seasonal combination served before) and the model as saved. Prints one
JSON line per set.

    PYTHONPATH=. .venv/bin/python bench/rescore_intervals.py /tmp/copy --sets m3_monthly m3_quarterly
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.bench_dev_suite import SETS, interval_scores, load_set, scores, validation_split, wide  # noqa: E402


def rescore(folder: Path, name: str, validate: bool) -> dict:
    from forecaster.contract import quantile_name
    from forecaster.evaluation.calibration import scaled_in
    from forecaster.forecaster import LSTMForecaster

    spec = SETS[name]
    h, season = spec["h"], spec["season"]
    train, test = load_set(name)
    if validate:
        train, test = validation_split(train, h)
    ids = [str(i) for i in dict.fromkeys(train["unique_id"])]
    insample = [g.to_numpy("float64") for _, g in train.groupby("unique_id", sort=False)["y"]]
    y = wide(test, ids, "y", h)
    (saved,) = (folder / name / "artifacts" / "models").glob("*/artifacts/artifacts/forecaster")
    model = LSTMForecaster.load(saved)
    names = [quantile_name(q) for q in model.quantiles_]
    served = model.calibration_
    width = {k: v for k, v in served.items() if not scaled_in({k: v})}
    out = {"set": name, "scored_on": "validation" if validate else "test", "method": model.calibration_method()}
    for label, calibration, calibrated in (("uncalibrated", served, False), ("width_units", width, True),
                                           ("as_saved", served, True)):
        model.calibration_ = calibration
        frame = model.predict(train, calibrated=calibrated)
        q = np.stack([wide(frame, ids, c, h) for c in names], axis=-1)
        out[label] = {"mase": scores(y, wide(frame, ids, "forecast", h), insample, season)["mase"],
                      **interval_scores(y, q, tuple(model.quantiles_), insample, season)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--sets", nargs="+", required=True, choices=sorted(SETS))
    parser.add_argument("--validate", action="store_true", help="the run scored its validation windows")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = []
    for name in args.sets:
        results.append(rescore(args.folder, name, args.validate))
        print(json.dumps(results[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
