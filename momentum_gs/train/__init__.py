"""Training: the loop, view scheduling, logging."""
