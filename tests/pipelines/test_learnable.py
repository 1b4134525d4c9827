"""`steps.check_learnable` reads the histories the fit reads: under ``missing_policy = "mask"`` a masked
reading's 0.0 is not a change of level."""
from __future__ import annotations

import numpy as np
import pytest

from forecaster.config import load_config
from forecaster.errors import DataError
from pipelines import steps
from tests.pipelines.test_scheduled_job import _job
from tests.synthetic import hourly_frame


def test_constant_series_with_masked_readings_are_refused_as_constant(tmp_path):
    data = hourly_frame(n_series=3, length=60).assign(y=5.0)
    data.loc[data.index[[10, 70, 130]], "y"] = np.nan  # one masked reading in each series, stored as 0.0
    path = _job(tmp_path, "masked", data=data)
    path.write_text(path.read_text().replace('freq = "h"', 'freq = "h"\nmissing_policy = "mask"'))
    prepared = steps.prepare(load_config(path))
    assert (prepared.frame[prepared.columns.target] == 0.0).sum() == 3  # the policy's 0.0s are there
    with pytest.raises(DataError, match=r"every series is constant \(3 series\)"):
        steps.check_learnable(prepared)
