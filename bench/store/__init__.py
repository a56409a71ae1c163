"""Persistence: storage URLs and engines, the ledger (budget slots, claims, workers) and the tamper-evident record."""
