"""Evaluation: rolling-origin backtests, accuracy metrics, conformal calibration and
monitoring.
"""
