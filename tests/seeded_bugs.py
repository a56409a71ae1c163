"""The one-line bugs of issue 12, each applied alone, with the tests that must fail on it (`make seeded-bugs`).

Each bug is a literal replacement in one source file; the file is restored afterwards whatever happens. A bug that
no listed test catches ("survived") makes the script exit 1, so this table cannot silently go stale.
Run from the repository root: ``python tests/seeded_bugs.py [NAME ...]``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name, file, original text, broken text, tests that must fail
BUGS: list[tuple[str, str, str, str, list[str]]] = [
    ("slot unique constraint removed", "bench/store/ledger.py",
     'sa.UniqueConstraint("experiment_id", "role", "arm", "study", "idx", name="uq_bench_slot"),', "",
     ["tests/test_ledger.py::test_duplicate_slot_is_refused_by_the_database",
      "tests/test_ledger.py::test_add_slots_twice_leaves_one_set"]),
    ("heartbeat does not extend the lease", "bench/store/ledger.py",
     "                        .values(lease_expires=now + lease_seconds))",
     "                        .values(lease_expires=SLOTS.c.lease_expires))",
     ["tests/test_ledger.py::test_heartbeat_extends_the_lease"]),
    ("finished slot claimable again", "bench/store/ledger.py",
     ".values(state=DONE, outcome=outcome,", ".values(state=FREE, outcome=outcome,",
     ["tests/test_ledger.py::test_finished_slot_is_never_claimable_again"]),
    ("diverged slot released instead of counted", "bench/store/ledger.py",
     ".values(state=DONE, outcome=outcome,", '.values(state=FREE if outcome == "diverged" else DONE, outcome=outcome,',
     ["tests/test_ledger.py::test_diverged_slot_is_counted_not_released",
      "tests/test_worker.py::test_diverged_trials_are_counted_not_released"]),
    ("spec hash without the search space", "bench/spec.py",
     "        return spec_hash(self.to_dict())",
     '        return spec_hash({k: v for k, v in self.to_dict().items() if k != "search_space"})',
     ["tests/test_spec.py::test_search_space_alone_changes_the_hash",
      "tests/test_spec.py::test_hash_changes_with_every_field"]),
    ("data order ignores the seed", "bench/trainers/training.py",
     "order = torch.Generator().manual_seed(seed)", "order = torch.Generator().manual_seed(0)",
     ["tests/test_training.py::test_data_order_follows_the_seed",
      "tests/test_training.py::test_data_order_is_independent_of_the_init"]),
    ("divergence ignores the gradient norm", "bench/trainers/training.py",
     "if not torch.isfinite(loss.detach() + norm):", "if not torch.isfinite(loss.detach()):",
     ["tests/test_training.py::test_infinite_gradient_norm_stops_before_the_step",
      "tests/test_training.py::test_infinite_gradient_norm_diverges_the_run"]),
    ("infinite validation loss accepted", "bench/trainers/training.py",
     "        if not math.isfinite(val):", "        if math.isnan(val):",
     ["tests/test_training.py::test_non_finite_validation_loss_diverges"]),
    ("pruner verdict ignored", "bench/tuning/objective.py",
     "        if trial.should_prune():", "        if trial.should_prune() and False:",
     ["tests/test_objective.py::test_pruner_verdict_stops_training",
      "tests/test_objective.py::test_the_spec_median_pruner_prunes_a_worse_trial",
      "tests/test_objective.py::test_pruned_state_reaches_optuna_through_the_worker"]),
    ("diverged trials left out of tuning curves", "bench/report/build.py",
     'return [t for t in trials if t["state"] == "diverged" or t["value"] is not None]',
     'return [t for t in trials if t["value"] is not None]',
     ["tests/test_report.py::test_diverged_trials_are_in_the_curves_scored_as_trivial_loss",
      "tests/test_report.py::test_diverged_trials_in_expected_best_of_n"]),
    ("diverged trials scored as their stored value", "bench/report/build.py",
     '    if state == "diverged" or value is None or not math.isfinite(value):',
     '    if value is None:',
     ["tests/test_report.py::test_diverged_trials_are_in_the_curves_scored_as_trivial_loss"]),
    ("decision direction flipped", "bench/report/inference.py",
     'return "a" if gain > 0 else "b"', 'return "a" if gain < 0 else "b"',
     ["tests/test_inference.py::test_lower_loss_is_better_whichever_arm_comes_first",
      "tests/test_report.py::test_lower_loss_wins_the_comparison",
      "tests/test_maximize.py::test_family_orients_the_decision_the_order_and_the_ratio"]),
    ("ranking order flipped", "bench/report/inference.py",
     "order = sorted(labels, key=lambda k: (sign * means[k], labels.index(k)))",
     "order = sorted(labels, key=lambda k: (-sign * means[k], labels.index(k)))",
     ["tests/test_inference.py::test_lower_loss_is_better_whichever_arm_comes_first",
      "tests/test_report.py::test_lower_loss_wins_the_comparison",
      "tests/test_maximize.py::test_family_orients_the_decision_the_order_and_the_ratio"]),
    ("P(A better) direction flipped", "bench/report/stats.py",
     "p_a_better=float(sps.norm.cdf(-t_obs * c))", "p_a_better=float(sps.norm.cdf(t_obs * c))",
     ["tests/test_inference.py::test_lower_loss_is_better_whichever_arm_comes_first",
      "tests/test_stats.py::test_compare_means_matches_scipy_welch"]),
    ("studies always minimize", "bench/tuning/studies.py",
     "direction=study_direction(spec.direction)", 'direction="minimize"',
     ["tests/test_maximize.py::test_maximize_end_to_end_tunes_upwards_and_names_the_truly_better_arm"]),
    ("audit all_held forced", "bench/report/build.py",
     '"all_held": all(c["held"] for c in checks)', '"all_held": True',
     ["tests/test_report.py::test_audit_exact_budget_fails_on_a_missing_trial",
      "tests/test_report.py::test_audit_fails_when_search_spaces_differ"]),
    ("audit exact-budget check forced", "bench/report/build.py",
     "    exact = bool(studies) and all(", "    exact = True or all(",
     ["tests/test_report.py::test_audit_exact_budget_fails_on_a_missing_trial",
      "tests/test_report.py::test_audit_exact_budget_fails_on_an_extra_trial"]),
    ("display URL shows the password", "bench/store/storage.py",
     "return make_url(url).render_as_string(hide_password=True)",
     "return make_url(url).render_as_string(hide_password=False)",
     ["tests/test_storage.py::test_display_url_hides_the_password_and_keeps_the_rest"]),
]


def run(name: str, path: str, old: str, new: str, tests: list[str]) -> bool:
    """Apply one bug, run its tests; True if they failed (the bug was caught)."""
    file = ROOT / path
    original = file.read_text()
    assert original.count(old) == 1, f"{name}: the original text must occur once in {path}"
    try:
        file.write_text(original.replace(old, new))
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                               "--timeout", "120", *tests], cwd=ROOT, capture_output=True, text=True)
        caught = done.returncode == 1
        last = (done.stdout.strip().splitlines() or [""])[-1]
        print(f"{'caught  ' if caught else 'SURVIVED'} {name:45s} {time.perf_counter() - start:5.1f} s  {last}")
        if done.returncode not in (0, 1):
            print(done.stdout[-2000:], done.stderr[-2000:])
        return caught
    finally:
        file.write_text(original)


def main(names: list[str]) -> int:
    chosen = [b for b in BUGS if not names or b[0] in names]
    survived = [b[0] for b in chosen if not run(*b)]
    print(f"{len(chosen) - len(survived)}/{len(chosen)} seeded bugs caught" + (f"; survived: {survived}" if survived
                                                                               else ""))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
