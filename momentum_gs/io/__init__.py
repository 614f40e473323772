"""Input/output: checkpoints (named, versioned dictionaries) and PLY export."""
