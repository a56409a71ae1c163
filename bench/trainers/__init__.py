"""Trainers: the built-in LSTM/GRU (models, training loop) behind the trainer contract, and plug-in loading.

No Optuna import here (the layering test checks it).
"""
