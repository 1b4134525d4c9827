"""Kept for models logged before the modules moved into packages: each logged model carries its own copy
of `forecaster.ops.mlflow_model`, whose code imports these names from here when MLflow's own loader
(`mlflow models serve`) runs it. The functions live in `forecaster.ops.serving`."""

from forecaster.ops.serving import check_frame_size, guard_request_parsing

__all__ = ["check_frame_size", "guard_request_parsing"]
