"""Scoring predictions: clinical metrics, the decision rule, calibration of probabilities."""
