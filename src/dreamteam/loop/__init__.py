"""The research loop: generations, budgets, and the one place that wires a search from a config."""
