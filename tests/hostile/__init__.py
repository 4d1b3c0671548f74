"""Hostile candidates: small modifications of the baseline that attack the harness."""
