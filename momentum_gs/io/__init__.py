"""Plumbing every floor uses: atomic writes, finiteness checks, memory budgets, external programs, checkpoints
(named, versioned dictionaries), mesh files and the run folder's layout."""
