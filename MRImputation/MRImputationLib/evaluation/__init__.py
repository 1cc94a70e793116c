"""Scoring imputations: metrics, the harness, reports, error maps."""
