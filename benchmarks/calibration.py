"""Calibration of the report's inference by simulation with known truth: false-positive rate, power, coverage.

The simulated experiment is the report's default design: k arms, S replicate tuning studies per arm, M fresh seeds
per study. An arm's log test loss is mu_arm + u_study + e_seed with u ~ N(0, sd_study^2), e ~ N(0, sd_seed^2) (the
hierarchy of DESIGN.md: studies, then seeds). Each replicate is analysed by the same functions the report uses
(bench.report.inference.family on per-study mean log loss, bench.report.stats.mean_ci_t), and the script prints:

- the rate at which the family names any winner among identical arms (target <= 5%),
- the power to name the truly best arm for a stated effect (target >= 80%),
- the coverage of every interval the report prints (target 95% +- 2%),
each with its Monte Carlo standard error. A heavy-tailed scenario (Student t with 3 df study effects) is printed
beside the normal one so that the figures do not rest on normality alone.

The power figure is a curve over effects (loss ratio of the best arm to the others) at 3 and 5 studies per arm: at
the default 3 studies the verdict names the winner with >= 80% power only for a large effect (ratio 0.25); 5
studies reach it at ratio 0.5. A third null scenario gives one arm twice the others' spread (Welch's test does not
assume equal variances).

A suite section follows (bench.report.aggregate, several tasks sharing the arms): T = 4 tasks, each with its own
scale (base and trivial loss) and its own between-study and seed sds, k = 4 arms, S = 3 studies, M = 5 seeds. It
prints the rate at which the aggregate (fixed-effect) rule names a winner or decides any pair among arms whose
averages over the tasks are equal (identical arms, and a heterogeneous null whose per-task effects average zero:
the fixed-effect claim is about that average, so this is its null), its power curve over a common effect, the
coverage of its ratio interval, the coverage of the stratified-bootstrap IQM and P(improvement) intervals, and the
Friedman (permutation p, and the Iman-Davenport F beside it) / Nemenyi rates among identical arms.
docs/suite_statistics.md records the figures.

A last line checks the one interval bench prints about its own tests: the mutation score estimated from a random
sample of each module's mutants (tests/mutation_score.py --sample, exact Clopper-Pearson), drawn without
replacement from a module of 600 mutants whose true share caught is known.

Run: python benchmarks/calibration.py [--reps N] [--seed S] [--suite-only | --mutation-only]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from bench.report import aggregate, inference, stats


@dataclass(frozen=True)
class Design:
    arms: int = 4
    studies: int = 3
    seeds: int = 5
    sd_study: float = 0.15  # between-study sd of log test loss (which config a tuning study happens to find)
    sd_seed: float = 0.25  # seed-to-seed sd of log test loss of one config
    heavy: bool = False  # study effects Student t (3 df), scaled to sd_study
    noisy_arm: float = 1.0  # arm 0's study and seed sds are this multiple of the others' (unequal variances)


def simulate(design: Design, mus: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One experiment: arm label -> per-study mean log test loss (S,), as build.seeds_summary computes it."""
    out = {}
    for i, mu in enumerate(mus):
        scale = design.noisy_arm if i == 0 else 1.0
        if design.heavy:
            u = rng.standard_t(3, size=design.studies) * scale * design.sd_study / math.sqrt(3.0)
        else:
            u = rng.normal(0.0, scale * design.sd_study, size=design.studies)
        e = rng.normal(0.0, scale * design.sd_seed, size=(design.studies, design.seeds))
        out[f"arm {i}"] = (mu + u[:, None] + e).mean(axis=1)
    return out


def _rate(hits: int, n: int) -> str:
    p = hits / n
    return f"{p:6.1%} ± {math.sqrt(max(p * (1 - p), 1e-12) / n):.1%}"


def null_fpr(design: Design, reps: int, rng: np.random.Generator) -> tuple[int, int]:
    """Replicates in which identical arms produce any 'A beats B' decision (a named winner included)."""
    false = 0
    for _ in range(reps):
        fam = inference.family(simulate(design, np.zeros(design.arms), rng), p_better_interval=False)
        false += any(p["decision"] in ("a", "b") for p in fam["pairs"])
    return false, reps


def power(design: Design, ratio: float, reps: int, rng: np.random.Generator) -> tuple[int, int]:
    """Replicates in which arm 0, whose geometric-mean loss is `ratio` x every other arm's, is named the winner."""
    mus = np.zeros(design.arms)
    mus[0] = math.log(ratio)
    won = 0
    for _ in range(reps):
        won += inference.family(simulate(design, mus, rng), p_better_interval=False)["winner"] == "arm 0"
    return won, reps


def coverage(design: Design, reps: int, rng: np.random.Generator) -> dict[str, tuple[int, int]]:
    """Coverage of the printed intervals: per-arm geo-mean (t), pair ratio (Welch t), P(A better) (noncentral t),
    and the single-config seed-level geo-mean used for fixed-config baselines."""
    mus = np.array([0.0, 0.3] + [0.0] * (design.arms - 2))
    sd_unit = math.sqrt(design.sd_study**2 + design.sd_seed**2 / design.seeds)
    true_theta = float(sps.norm.cdf(-(mus[0] - mus[1]) / (sd_unit * math.sqrt(2))))
    hits = {"arm geo-mean (t, study units)": 0, "ratio A/B (Welch t)": 0, "P(A better) (noncentral t)": 0,
            "fixed config geo-mean (t, seed units)": 0}
    for _ in range(reps):
        units = simulate(design, mus, rng)
        ci = stats.mean_ci_t(units["arm 0"])
        assert ci is not None
        hits["arm geo-mean (t, study units)"] += ci[1] <= mus[0] <= ci[2]
        fam = inference.family(units, p_better_interval=False)
        pair = next(p for p in fam["pairs"] if (p["a"], p["b"]) == ("arm 0", "arm 1"))
        lo, hi = pair["ratio_ci"]
        hits["ratio A/B (Welch t)"] += lo <= math.exp(mus[0] - mus[1]) <= hi
        # the P(A better) interval of that pair, as the report computes it (only this pair: the slow part)
        tlo, thi = inference.family({k: units[k] for k in ("arm 0", "arm 1")})["pairs"][0]["p_a_better_ci"]
        hits["P(A better) (noncentral t)"] += tlo <= true_theta <= thi
        seeds = rng.normal(0.0, design.sd_seed, size=design.seeds)
        sci = stats.mean_ci_t(seeds)
        assert sci is not None
        hits["fixed config geo-mean (t, seed units)"] += sci[1] <= 0.0 <= sci[2]
    return {k: (v, reps) for k, v in hits.items()}


def percentile_bootstrap_coverage(n: int, reps: int, rng: np.random.Generator) -> tuple[int, int]:
    """The interval the report used before (percentile bootstrap of a mean), for comparison."""
    hit = 0
    for _ in range(reps):
        x = rng.normal(size=n)
        boot = x[rng.integers(0, n, size=(1000, n))].mean(axis=1)
        lo, hi = np.quantile(boot, [0.025, 0.975])
        hit += lo <= 0.0 <= hi
    return hit, reps


POWER_RATIOS = (0.7, 0.5, 0.35, 0.25)


# ---------------------------------------------------------------- suite: several tasks sharing the arms


@dataclass(frozen=True)
class SuiteDesign:
    tasks: int = 4
    arms: int = 4
    studies: int = 3
    seeds: int = 5
    task_seed: int = 7  # the tasks' scales and noise levels are drawn once from this seed: one fixed suite


@dataclass(frozen=True)
class SuiteTask:
    base: float  # geometric-mean test loss of an arm with effect 0 (the task's scale)
    trivial: float  # the trivial predictor's loss
    sd_study: float  # between-study sd of log test loss, this task's own
    sd_seed: float  # seed-to-seed sd of log test loss, this task's own


def suite_tasks(design: SuiteDesign) -> list[SuiteTask]:
    """The suite's tasks: scales from 0.05 to 3 (log-uniform), trivial loss 1.5-4x the base, between-study sd
    0.05-0.30 and seed sd 0.10-0.40, each drawn per task (so tasks differ in scale and in noise)."""
    rng = np.random.default_rng(design.task_seed)
    out = []
    for _ in range(design.tasks):
        base = float(np.exp(rng.uniform(math.log(0.05), math.log(3.0))))
        out.append(SuiteTask(base=base, trivial=base * float(rng.uniform(1.5, 4.0)),
                             sd_study=float(rng.uniform(0.05, 0.30)), sd_seed=float(rng.uniform(0.10, 0.40))))
    return out


def simulate_suite(design: SuiteDesign, effects: np.ndarray, rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """One suite: task name -> TaskData (aggregate's input). effects: (tasks, arms) log effects on the loss; a
    seed's log test loss is log(base_t) + effects[t, arm] + u_study + e_seed with the task's own sds."""
    out: dict[str, dict[str, Any]] = {}
    for t, task in enumerate(suite_tasks(design)):
        arms = {}
        for j in range(design.arms):
            u = rng.normal(0.0, task.sd_study, size=(design.studies, 1))
            e = rng.normal(0.0, task.sd_seed, size=(design.studies, design.seeds))
            arms[f"arm {j}"] = np.exp(math.log(task.base) + effects[t, j] + u + e).tolist()
        out[f"task {t}"] = {"trivial": task.trivial, "arms": arms}
    return out


def suite_verdict(suite: dict[str, dict[str, Any]], per_task: bool = True) -> dict[str, Any]:
    """What aggregate() decides (pairs, winner, per-task winners, disagreements), without its bootstrap: the same
    functions on the same units (tests/test_aggregate.py checks that they agree with aggregate()). per_task=False
    skips the per-task families (the slow part), for figures that need only the aggregate rule."""
    labels, data, _ = aggregate.read_tasks(suite)
    units = aggregate.study_units(data)
    fe = aggregate.fixed_effect_family(units, labels)
    tasks = aggregate.per_task_summary(units, 0.05, 0.1, 0.95) if per_task else {}
    return {"fe": fe, "per_task": tasks, "disagreements": aggregate.disagreements(tasks, labels)}


def heterogeneous_null(design: SuiteDesign, size: float = math.log(1.3)) -> np.ndarray:
    """(tasks, arms) effects of ±size, alternating over tasks and arms and centred per arm: arms differ on every
    task (by 1.3^2 = 1.69x between neighbours) but every arm's average over the tasks is the same."""
    t, j = np.meshgrid(np.arange(design.tasks), np.arange(design.arms), indexing="ij")
    signs = np.where((t + j) % 2 == 0, 1.0, -1.0)
    return size * (signs - signs.mean(axis=0))


def suite_null(design: SuiteDesign, effects: np.ndarray, reps: int, rng: np.random.Generator, per_task: bool = True
               ) -> dict[str, int]:
    """Counts over `reps` suites whose arms have equal averages over the tasks: the aggregate names a winner, decides
    any pair a/b, the per-task rule decides some pair a/b on some task, a disagreement is flagged."""
    hits = {"winner": 0, "pair": 0, "task pair": 0, "disagreement": 0, "reps": reps}
    for _ in range(reps):
        v = suite_verdict(simulate_suite(design, effects, rng), per_task)
        hits["winner"] += v["fe"]["winner"] is not None
        hits["pair"] += any(p["decision"] in ("a", "b") for p in v["fe"]["pairs"])
        hits["task pair"] += any(p["decision"] in ("a", "b") for s in v["per_task"].values() for p in s["pairs"])
        hits["disagreement"] += bool(v["disagreements"])
    return hits


def suite_power(design: SuiteDesign, ratio: float, reps: int, rng: np.random.Generator, per_task: bool = True
                ) -> tuple[int, int, int]:
    """(suites where arm 0, at loss ratio `ratio` x the others on every task, is the aggregate winner; tasks on which
    the per-task rule names it (0 when per_task is False); reps)."""
    effects = np.zeros((design.tasks, design.arms))
    effects[:, 0] = math.log(ratio)
    won = on_task = 0
    for _ in range(reps):
        v = suite_verdict(simulate_suite(design, effects, rng), per_task)
        won += v["fe"]["winner"] == "arm 0"
        on_task += sum(s["winner"] == "arm 0" for s in v["per_task"].values())
    return won, on_task, reps


def suite_ratio_coverage(design: SuiteDesign, reps: int, rng: np.random.Generator) -> tuple[int, int]:
    """Coverage of the aggregate ratio interval of (arm 0, arm 1) for its truth, the geometric mean over tasks of
    the per-task true ratios, when arm 0's effect differs from task to task (0.6x to 1.1x)."""
    effects = np.zeros((design.tasks, design.arms))
    effects[:, 0] = np.log(np.linspace(0.6, 1.1, design.tasks))
    truth = math.exp(float(np.mean(effects[:, 0] - effects[:, 1])))
    hit = 0
    for _ in range(reps):
        labels, data, _ = aggregate.read_tasks(simulate_suite(design, effects, rng))
        pair = aggregate.fixed_effect_family(aggregate.study_units(data), labels)["pairs"][0]
        hit += pair["ratio_ci"][0] <= truth <= pair["ratio_ci"][1]
    return hit, reps


def _suite_effects(design: SuiteDesign) -> np.ndarray:
    """Arm 0 at 0.8x on every task, the others equal: the design of the IQM and P(improvement) coverage."""
    effects = np.zeros((design.tasks, design.arms))
    effects[:, 0] = math.log(0.8)
    return effects


def _min_max(task: SuiteTask, ref: float, log_loss: np.ndarray) -> np.ndarray:
    """Min-max scores of one task against a reference (best) loss: (trivial - loss) / (trivial - ref)."""
    scores: np.ndarray = (task.trivial - np.exp(log_loss)) / (task.trivial - ref)
    return scores


def true_refs(design: SuiteDesign, effects: np.ndarray) -> list[float]:
    """Per task, the TRUE reference: the best arm's population geometric-mean loss."""
    return [task.base * math.exp(float(effects[t].min())) for t, task in enumerate(suite_tasks(design))]


def population_iqm(design: SuiteDesign, effects: np.ndarray, arm: int, refs: list[float], draws: int = 100_000
                   ) -> float:
    """The arm's population IQM under min-max normalisation by `refs` (per task): the interquartile mean of the
    equal-weight mixture over tasks of its seed-score distribution (marginally, log loss ~ N(log base + effect,
    sd_study^2 + sd_seed^2)), from `draws` fixed draws per task (Monte Carlo error about 0.001 here)."""
    z = np.random.default_rng(12345).standard_normal(draws)
    pooled = [_min_max(task, refs[t], math.log(task.base) + effects[t, arm] + math.hypot(task.sd_study,
                                                                                           task.sd_seed) * z)
              for t, task in enumerate(suite_tasks(design))]
    return aggregate.iqm(np.concatenate(pooled))


def true_p_improvement(design: SuiteDesign, effects: np.ndarray, a: int, b: int) -> float:
    """Average over tasks of P(a seed of arm a, from its own study, has lower loss than one of arm b):
    Phi(-(e_a - e_b) / sqrt(2 (sd_study^2 + sd_seed^2))) per task."""
    return float(np.mean([sps.norm.cdf(-(effects[t, a] - effects[t, b]) /
                                       math.sqrt(2.0 * (task.sd_study**2 + task.sd_seed**2)))
                          for t, task in enumerate(suite_tasks(design))]))


def suite_bootstrap_coverage(design: SuiteDesign, reps: int, rng: np.random.Generator, boot: int = 1000
                             ) -> dict[str, tuple[int, int]]:
    """Coverage of the stratified-bootstrap intervals (aggregate.rliable_summary, `boot` resamples):
    - arm 0's IQM with scores normalised by the true reference (a clean truth: the population IQM);
    - arm 0's IQM as the report computes it, normalised by the lowest observed per-study geometric mean, against
      the population IQM under that same normaliser (the interval treats the normaliser as fixed, as rliable's
      reference scores are) and against the population IQM under the true normaliser;
    - the average P(improvement) of arm 0 over arm 1 (truth: true_p_improvement).
    """
    effects = _suite_effects(design)
    tasks, refs = suite_tasks(design), true_refs(design, effects)
    iqm_truth = population_iqm(design, effects, 0, refs)
    p_truth = true_p_improvement(design, effects, 0, 1)
    keys = ("IQM, true normaliser", "IQM as reported, truth under its estimated normaliser",
            "IQM as reported, truth under the true normaliser", "P(improvement) arm 0 vs arm 1")
    hits = dict.fromkeys(keys, 0)
    labels = ["arm 0", "arm 1"]
    for _ in range(reps):
        _, data, trivial = aggregate.read_tasks(simulate_suite(design, effects, rng))
        fixed = {name: {a: [_min_max(tasks[t], refs[t], np.log(s)) for s in data[name][a]] for a in labels}
                 for t, name in enumerate(data)}
        out = aggregate.rliable_summary(fixed, data, labels, 0.95, boot, rng)
        lo, hi = out["iqm"]["arm 0"]["ci"]
        hits[keys[0]] += lo <= iqm_truth <= hi
        plo, phi = out["p_improvement"][0]["ci"]
        hits[keys[3]] += plo <= p_truth <= phi
        normalised = {name: aggregate.normalise(data[name], trivial[name]) for name in data}
        assert all(info["method"] == "min-max" for _, info in normalised.values())
        estimated = [info["best"] for _, info in normalised.values()]
        lo, hi = aggregate.rliable_summary({n: sc for n, (sc, _) in normalised.items()}, data, ["arm 0"], 0.95, boot,
                                           rng)["iqm"]["arm 0"]["ci"]
        hits[keys[1]] += lo <= population_iqm(design, effects, 0, estimated) <= hi
        hits[keys[2]] += lo <= iqm_truth <= hi
    return {k: (v, reps) for k, v in hits.items()}


def suite_rank_null(design: SuiteDesign, reps: int, rng: np.random.Generator) -> dict[str, int]:
    """Under identical arms: the Friedman test (its permutation p, as aggregate reports) rejects; the Iman-Davenport
    F approximation would reject (its p, shown beside); some pair's average ranks differ by more than the Nemenyi
    CD; both (Demšar's procedure: the post-hoc test only after the Friedman test rejects)."""
    hits = {"friedman": 0, "iman_davenport": 0, "nemenyi": 0, "both": 0, "reps": reps}
    effects = np.zeros((design.tasks, design.arms))
    for _ in range(reps):
        labels, data, _ = aggregate.read_tasks(simulate_suite(design, effects, rng))
        geo = [[float(np.exp(np.mean(np.log(np.concatenate(data[t][a]))))) for a in labels] for t in data]
        r = aggregate.friedman(geo, labels)
        hits["friedman"] += r["rejects"]
        hits["iman_davenport"] += r["iman_davenport_p"] <= 0.05
        hits["nemenyi"] += bool(r["beyond_cd"])
        hits["both"] += r["rejects"] and bool(r["beyond_cd"])
    return hits


SUITE_RATIOS = (0.9, 0.8, 0.7, 0.5)
# The per-task comparison is shown at 0.7 and 0.5 only: at 0.9 and 0.8 one task alone names the winner in under 1% of
# suites (measured). (aggregate.per_task_summary runs inference.family with sizing=False, as the report does.)
SUITE_RATIOS_PER_TASK = (0.7, 0.5)


def suite_figures(reps: int, seed: int) -> None:
    """The suite section: the aggregate verdict rule, its intervals and the rank tests (own random stream, so
    --suite-only prints the same figures as a full run)."""
    rng = np.random.default_rng([seed, 2])
    start = time.perf_counter()
    d = SuiteDesign()
    print(f"suite: {d.tasks} tasks x {d.arms} arms x {d.studies} studies x {d.seeds} seeds; each task its own scale "
          f"and noise (base, trivial, sd_study, sd_seed):")
    print("; ".join(f"{t.base:.3g}, {t.trivial:.3g}, {t.sd_study:.2f}, {t.sd_seed:.2f}" for t in suite_tasks(d)))
    print(f"aggregate rule: fixed effect over tasks (per-task Welch, Satterthwaite df), Holm, alpha 0.05, "
          f"min_effect 10%; {reps} replicates per figure; ± is one Monte Carlo standard error\n")
    print("| figure | scenario | measured | target |")
    print("|---|---|---|---|")
    for name, effects in (("identical arms", np.zeros((d.tasks, d.arms))),
                          ("heterogeneous null (average effect 0)", heterogeneous_null(d))):
        h = suite_null(d, effects, reps, rng)
        n = h["reps"]
        print(f"| aggregate winner named | {name} | {_rate(h['winner'], n)} | ≤ 5% |")
        print(f"| aggregate pair decided a/b | {name} | {_rate(h['pair'], n)} | ≤ 5% |")
        null = name == "identical arms"
        print(f"| per-task rule decides a pair a/b on some task | {name} | {_rate(h['task pair'], n)} | "
              f"{'(each task ≤ 5%; any of 4 up to 19%)' if null else '(high: the per-task effects are real)'} |")
        print(f"| disagreement flagged | {name} | {_rate(h['disagreement'], n)} | "
              f"{'(low)' if null else '(high: the tasks do disagree)'} |", flush=True)
    for ratio in SUITE_RATIOS:
        per_task = ratio in SUITE_RATIOS_PER_TASK
        won, on_task, n = suite_power(d, ratio, reps, rng, per_task)
        print(f"| power: arm 0 at loss ratio {ratio} on every task named aggregate winner | normal | "
              f"{_rate(won, n)} | (curve) |", flush=True)
        if per_task:
            print(f"| power: ... named winner by one task's own rule (mean over tasks) | normal | "
                  f"{_rate(on_task, n * d.tasks)} | (for comparison) |", flush=True)
    print(f"| coverage: aggregate ratio interval (truth: geo-mean over tasks of per-task ratios) | per-task "
          f"effects 0.6x-1.1x | {_rate(*suite_ratio_coverage(d, reps, rng))} | 95% ± 2% |", flush=True)
    for label, (hit, n) in suite_bootstrap_coverage(d, reps, rng).items():
        print(f"| coverage: stratified bootstrap, {label} | arm 0 at 0.8x | {_rate(hit, n)} | 95% ± 2% |",
              flush=True)
    r = suite_rank_null(d, reps, rng)
    print(f"| Friedman test rejects (permutation p, as reported) | identical arms | "
          f"{_rate(r['friedman'], r['reps'])} | ≤ 5% |")
    print(f"| Iman-Davenport F p ≤ 5% (shown beside, no longer the test) | identical arms | "
          f"{_rate(r['iman_davenport'], r['reps'])} | (≤ 5%) |")
    print(f"| Nemenyi: some pair beyond CD (no Friedman gate) | identical arms | {_rate(r['nemenyi'], r['reps'])} "
          f"| ≤ 5% |")
    print(f"| Friedman rejects and a pair beyond CD | identical arms | {_rate(r['both'], r['reps'])} | ≤ 5% |")
    print(f"\n{time.perf_counter() - start:.0f} s")


def experiment_figures(reps: int, seed: int) -> None:
    """The single-experiment figures (the report's per-experiment verdict)."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    normal, heavy, unequal = Design(), Design(heavy=True), Design(noisy_arm=2.0)
    d = normal
    print(f"design: {d.arms} arms x {d.studies} studies x {d.seeds} seeds; sd_study {d.sd_study}, sd_seed "
          f"{d.sd_seed} (log test loss); alpha 0.05 Holm, min_effect 10%; {reps} replicates per figure; "
          f"± is one Monte Carlo standard error\n")
    print("| figure | scenario | measured | target |")
    print("|---|---|---|---|")
    for name, design in (("normal", normal), ("heavy-tailed studies", heavy), ("one arm 2x noisier", unequal)):
        print(f"| winner named among identical arms | {name} | {_rate(*null_fpr(design, reps, rng))} | ≤ 5% |",
              flush=True)
    for studies in (3, 5):
        for ratio in POWER_RATIOS:
            design = Design(studies=studies)
            target = "≥ 80%" if (studies, ratio) in ((3, 0.25), (5, 0.5)) else "(curve)"
            print(f"| power: best arm at loss ratio {ratio} named winner, {studies} studies | normal | "
                  f"{_rate(*power(design, ratio, reps, rng))} | {target} |", flush=True)
    for name, design in (("normal", normal), ("heavy-tailed studies", heavy)):
        for label, (h, n) in coverage(design, reps, rng).items():
            print(f"| coverage: {label} | {name} | {_rate(h, n)} | 95% ± 2% |", flush=True)
    print(f"| coverage: old percentile bootstrap, n = 5 (replaced) | normal | "
          f"{_rate(*percentile_bootstrap_coverage(5, reps, rng))} | 95% ± 2% |")
    print(f"\n{time.perf_counter() - start:.0f} s")


@functools.cache
def _mutation_score_module() -> Any:
    """tests/mutation_score.py loaded by path (a script beside the tests, not part of the bench package), once."""
    path = Path(__file__).resolve().parent.parent / "tests" / "mutation_score.py"
    spec = importlib.util.spec_from_file_location("mutation_score", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def mutation_sample_coverage(share: float, reps: int, rng: np.random.Generator, population: int = 600,
                             drawn: int = 60) -> tuple[int, int]:
    """How often the sample interval holds the module's true share caught: `drawn` of `population` mutants
    without replacement (hypergeometric), of which round(share * population) are caught."""
    interval = _mutation_score_module().interval
    caught = round(share * population)
    truth = caught / population
    hits = 0
    for _ in range(reps):
        low, high = interval(int(rng.hypergeometric(caught, population - caught, drawn)), drawn)
        hits += low <= truth <= high
    return hits, reps


def mutation_figures(reps: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    print("| figure | scenario | measured | target |")
    print("|---|---|---|---|")
    for share in (0.80, 0.90, 0.97):
        print(f"| coverage: mutation-score sample interval, 60 of 600 mutants | true share {share:.0%} | "
              f"{_rate(*mutation_sample_coverage(share, reps, rng))} | ≥ 95% (exact) |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=1000, help="replicates per figure (Monte Carlo error ~ 1/sqrt)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--suite-only", action="store_true", help="print only the suite (across-tasks) figures")
    ap.add_argument("--mutation-only", action="store_true", help="print only the mutation-score sample figure")
    args = ap.parse_args()
    if not (args.suite_only or args.mutation_only):
        experiment_figures(args.reps, args.seed)
        print()
    if not args.mutation_only:
        suite_figures(args.reps, args.seed)
        print()
    mutation_figures(args.reps, args.seed)


if __name__ == "__main__":
    main()
