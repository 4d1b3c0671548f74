"""Where trials run: jobs, the local process pool, Ray."""
