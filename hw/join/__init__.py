"""Join and fork units of residual graphs: add, concat (joins) and broadcast (fork)."""
