"""Evaluation: render held-out views, score them, write results.json and images."""
