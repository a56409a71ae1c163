"""Workloads: the Task interface, built-in tasks and user task factories (no optuna here)."""
