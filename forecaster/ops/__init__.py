"""The MLflow-facing operations: tracking store, registry and promotion, model files' integrity,
the pyfunc model, serving limits and OS locks.
"""
