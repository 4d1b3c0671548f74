"""Propose: from persona, task and history to a candidate's files (prompt, agent turn, edits, change records, novelty, crossover, team and slot allocation)."""
