"""Example user trainers for bench: each is a plain ``fit(params, arm, seed, report)`` (see bench/trainer.py)."""
