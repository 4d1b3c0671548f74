"""Harness-owned scores: the language model's whole-split loss, row tasks' metrics, and the integrity probes."""
