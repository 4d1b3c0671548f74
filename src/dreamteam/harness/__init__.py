"""Harness: check a candidate, train it in a sandbox, score it with code the candidate cannot touch."""
