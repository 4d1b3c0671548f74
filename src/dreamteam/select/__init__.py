"""Selection under noise: pure rules and statistics, and the judge that applies them to a run's store."""
