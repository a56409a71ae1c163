"""Orchestration: the worker loop, the local multi-process run, status, the dashboard, suites."""
