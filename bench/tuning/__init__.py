"""Optuna glue: search space, studies (names, attributes, creation) and the objective
(suggest -> fit -> report/prune).
"""
