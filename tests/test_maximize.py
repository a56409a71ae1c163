"""`[metric] direction = "maximize"` (issue 10): the spec, the tuning, and every statistic of the report oriented
so that higher is better; tiny hand-checkable data per direction, a consistency property, and end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.spec import SpecError, load_spec, loss_sign, parse_spec
from tests.conftest import TINY
from tests.test_trainer import user_spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def max_spec(**over: Any) -> dict[str, Any]:
    """A user-trainer spec that maximizes its score (tests.bad_trainers:good_accuracy: higher k is better)."""
    return user_spec("tests.bad_trainers:good_accuracy",
                     metric={"name": "accuracy", "direction": "maximize", "worst": 0.5}, **over)


# ---------------------------------------------------------------- the spec


def test_maximize_is_a_user_trainer_direction_with_a_positive_floor() -> None:
    spec = parse_spec(max_spec())
    assert (spec.direction, spec.worst, spec.sign, spec.metric) == ("maximize", 0.5, -1, "accuracy")
    assert spec.to_dict()["direction"] == "maximize"
    assert parse_spec(max_spec()).hash != parse_spec(user_spec()).hash  # the direction is part of the hash
    for worst, message in ((0.0, "metric.worst: must be above 0 with direction = \"maximize\""),
                           (-1.0, "metric.worst: must be above 0")):
        with pytest.raises(SpecError, match="metric.worst") as err:
            parse_spec(user_spec(metric={"direction": "maximize", "worst": worst}), "s.toml")
        assert message in str(err.value)
    with pytest.raises(SpecError, match="metric.direction: 'best' is not one of: minimize, maximize"):
        parse_spec(user_spec(metric={"direction": "best", "worst": 1.0}))


def test_builtin_trainer_refuses_maximize_naming_the_field() -> None:
    with pytest.raises(SpecError, match=r"s.toml: metric.direction: 'maximize': the built-in trainer's score is "
                                        r"its validation loss, minimized"):
        parse_spec({**TINY, "metric": {"direction": "maximize"}}, "s.toml")


def test_existing_minimize_specs_keep_their_hashes() -> None:
    """Pinned before maximize existed: `direction` was always hashed, so allowing a second value changes nothing."""
    assert parse_spec(TINY).hash == "0b083ad286b82522dc155d5a19ce438bee3b6ae1549eb3f94e89c97012e77a9c"
    assert parse_spec(user_spec()).hash == "862a1d520a84ea165e28d434b3e364c25094fcb4fdde1dbb8c8ad3cf0af350ac"
    assert load_spec(EXAMPLES / "numpy_logreg.toml").hash == \
        "b6bd8692c6f606e4a369e43763a6dcfb328f1704e1502023351fa05b8f90ad19"
    assert load_spec(ROOT / "studies" / "lstm_depth.toml").hash == \
        "e7eb8c9194361c569b9a80e754a50e88c9ebc33e8bcf00b4c8a2d7a588498ddc"


def test_loss_sign() -> None:
    assert (loss_sign("minimize"), loss_sign("maximize")) == (1, -1)
    with pytest.raises(ValueError, match="direction must be one of"):
        loss_sign("up")


# ---------------------------------------------------------------- tuning: the scoring rule and the study direction


def _trial(state: str, value: float | None, steps: list[float], diverged: bool = False) -> Any:
    import optuna

    dist = {"lr": optuna.distributions.FloatDistribution(0.01, 1.0)}
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState[state], value=value, params={"lr": 0.1}, distributions=dist,
        intermediate_values=dict(enumerate(steps)), user_attrs={"diverged": diverged})


def test_tuning_score_is_the_best_epoch_in_the_metrics_direction() -> None:
    import math

    from bench.tuning.studies import study_direction, tuning_loss, tuning_score

    pruned = _trial("PRUNED", None, [0.6, 0.8, 0.7])
    assert (tuning_score(pruned, "minimize"), tuning_score(pruned, "maximize")) == (0.6, 0.8)
    assert (tuning_loss(pruned, "minimize"), tuning_loss(pruned, "maximize")) == (0.6, -0.8)
    diverged = _trial("COMPLETE", -math.inf, [0.9], diverged=True)
    assert (tuning_score(diverged, "minimize"), tuning_score(diverged, "maximize")) == (math.inf, -math.inf)
    assert tuning_loss(diverged, "maximize") == math.inf  # never a best config, whichever the direction
    assert tuning_score(_trial("PRUNED", None, []), "maximize") == -math.inf
    assert tuning_score(_trial("COMPLETE", 0.7, [0.7]), "maximize") == 0.7
    assert study_direction("maximize").name == "MAXIMIZE"


def test_a_diverged_run_is_infinitely_bad_in_the_metrics_direction() -> None:
    import math

    from bench.trainer import Reporter, check_result
    from bench.tuning.objective import _outcome

    for raw, want in ((user_spec(), math.inf), (max_spec(), -math.inf)):
        out = _outcome(parse_spec(raw), check_result(math.nan, False), 0.1, Reporter(), {})
        assert (out.outcome, out.value) == ("diverged", want)


# ---------------------------------------------------------------- oriented statistics, each mirrored


def test_tuner_optimism_is_negative_when_the_tuning_value_flattered_in_either_direction() -> None:
    from bench.report.stats import tuner_optimism

    # minimize: tuned 0.5, re-evaluated mean 2 (sd 1) -> -1.5; maximize: tuned 0.9, re-evaluated 0.8 (sd 0.1)
    assert tuner_optimism(0.5, [1.0, 2.0, 3.0], "minimize") == pytest.approx(-1.5)
    assert tuner_optimism(0.9, [0.7, 0.8, 0.9], "maximize") == pytest.approx(-1.0)
    assert tuner_optimism(-0.5, [-1.0, -2.0, -3.0], "maximize") == pytest.approx(-1.5)  # the mirror image


def test_still_improving_reads_a_rising_best_so_far_when_maximizing() -> None:
    import numpy as np

    from bench.report.stats import still_improving

    late = [np.log([1, 1, 1, 1, 1, 1, 1, 1, 0.8, 0.5])]  # a falling loss: gain 0.69 over the last 2 trials
    rising = [-c for c in late]  # the same gain for a maximized (log) score
    assert still_improving(late, 0.05, direction="minimize") and still_improving(rising, 0.05, direction="maximize")
    assert not still_improving(rising, 0.05, direction="minimize")  # read the wrong way, it got worse
    assert not still_improving(late, 0.05, direction="maximize")


LOW, HIGH = [0.0, 0.1, 0.2, 0.05, 0.15], [1.0, 1.1, 1.2, 1.05, 1.15]  # log scores; by hand: mean 0.1 vs 1.1


def test_family_orients_the_decision_the_order_and_the_ratio() -> None:
    from bench.report.inference import family

    lo_wins = family({"lo": LOW, "hi": HIGH}, direction="minimize")
    hi_wins = family({"lo": LOW, "hi": HIGH}, direction="maximize")
    assert (lo_wins["winner"], lo_wins["order"], lo_wins["groups"]) == ("lo", ["lo", "hi"], [["lo"], ["hi"]])
    assert (hi_wins["winner"], hi_wins["order"], hi_wins["groups"]) == ("hi", ["hi", "lo"], [["hi"], ["lo"]])
    p_min, p_max = lo_wins["pairs"][0], hi_wins["pairs"][0]
    # The ratio is the metric's own: geometric mean of lo over hi = exp(0.1 - 1.1), in both directions.
    assert p_min["ratio"] == p_max["ratio"] == pytest.approx(0.36787944)
    assert (p_min["decision"], p_max["decision"]) == ("a", "b")
    assert p_min["p"] == pytest.approx(p_max["p"]) and p_min["ratio_ci"] == pytest.approx(p_max["ratio_ci"])
    assert p_min["ratio_ci"][0] < p_min["ratio"] < p_min["ratio_ci"][1]
    assert p_min["p_a_better"] == pytest.approx(1 - p_max["p_a_better"])
    assert (p_min["p_a_better_empirical"], p_max["p_a_better_empirical"]) == (1.0, 0.0)


@pytest.mark.parametrize("units", [
    {"a": LOW, "b": HIGH, "c": [0.5, 0.6, 0.4, 0.55, 0.45]},
    {"a": [0.1, 0.12, 0.11], "b": [0.1, 0.13, 0.09], "c": [0.3]},  # equivalent, and one untestable arm
])
def test_maximizing_units_decides_like_minimizing_their_negation(units: dict[str, list[float]]) -> None:
    from bench.report.inference import family

    up = family(units, direction="maximize")
    down = family({k: [-x for x in v] for k, v in units.items()}, direction="minimize")
    for key in ("winner", "order", "groups"):
        assert up[key] == down[key], key
    for p, q in zip(up["pairs"], down["pairs"], strict=True):
        assert p["decision"] == q["decision"] and p["units_needed"] == q["units_needed"]
        assert p["ratio"] == pytest.approx(1 / q["ratio"])
        if p["ratio_ci"] is not None:
            assert p["ratio_ci"] == pytest.approx([1 / q["ratio_ci"][1], 1 / q["ratio_ci"][0]])
            assert p["p_a_better"] == pytest.approx(q["p_a_better"])


# ---------------------------------------------------------------- end to end through the real CLI


def accuracy_spec(name: str = "acc_demo", error: bool = False) -> dict[str, Any]:
    """3 widths x 3 studies x 4 random trials, a median pruner, re-evaluation, a fixed and a transferred config."""
    metric = ({"name": "error", "direction": "minimize", "worst": 0.5} if error else
              {"name": "accuracy", "direction": "maximize", "worst": 0.5})
    return {
        "name": name, "trainer": {"name": "tests.accuracy_trainer:fit"}, "scientific": {"width": [2, 4, 8]},
        "metric": metric, "search_space": {"lr": {"type": "float", "low": 0.003, "high": 3.0, "log": True}},
        "fixed": {"error": error}, "budget": {"studies": 3, "trials": 4, "epochs": 3},
        "sampler": {"kind": "random", "seed": 0}, "pruner": {"kind": "median", "n_startup_trials": 1,
                                                             "n_warmup_steps": 0},
        "evaluation": {"seeds": 2}, "baseline": {"lr": 0.5, "from_arm": {"width": 2}},
    }


def _run(tmp_path: Path, raw: dict[str, Any]) -> tuple[dict[str, Any], str]:
    import json

    from bench.cli import main
    from tests.test_trainer import write

    url = f"sqlite:///{tmp_path / 'db'}"
    out = tmp_path / "rep"
    assert main(["run", str(write(tmp_path, raw)), "--storage", url, "--out", str(out), "--workers", "1"]) == 0
    return json.loads((out / "report.json").read_text()), url


def _studies(url: str) -> dict[str, Any]:
    import optuna

    from bench.store.storage import optuna_storage

    storage = optuna_storage(url)
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=storage)
            for s in optuna.get_all_study_summaries(storage)}


ONE_RUN = pytest.mark.xdist_group("maximize")  # the tests that share the `maximized` run stay on one xdist worker


@pytest.fixture(scope="module")
def maximized(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    return _run(tmp_path_factory.mktemp("max"), accuracy_spec())


@pytest.mark.slow
@pytest.mark.timeout(300)
@ONE_RUN
def test_maximize_end_to_end_tunes_upwards_and_names_the_truly_better_arm(maximized: tuple[dict[str, Any], str]
                                                                         ) -> None:
    import math

    from bench.tuning.studies import tuning_score

    doc, url = maximized
    assert doc["settings"]["direction"] == "maximize" and doc["complete"]
    assert {a["label"]: [s["n_finished"] for s in a["studies"]] for a in doc["arms"]} == \
        {f"width {w}": [4, 4, 4] for w in (2, 4, 8)}  # exact budgets
    studies = _studies(url)
    assert len(studies) == 3 * (3 + 3) and {s.direction.name for s in studies.values()} == {"MAXIMIZE"}
    tune = {n: s for n, s in studies.items() if s.user_attrs["role"] == "tune"}
    assert any(t.state.name == "PRUNED" for s in tune.values() for t in s.trials)  # the pruner ran, upwards
    diverged = [t for s in tune.values() for t in s.trials if t.user_attrs.get("diverged")]
    assert diverged and all(t.value == -math.inf for t in diverged)  # the worst value of a MAXIMIZE study
    assert sum(a["by_outcome"]["diverged"] for a in doc["arms"]) == len(diverged)
    for name, study in tune.items():  # each study's re-evaluated config is its highest-scoring trial
        scores = {t.number: tuning_score(t, "maximize") for t in study.trials}
        best = max(scores, key=lambda n: (scores[n], -n))
        evals = studies[name.rsplit("-s", 1)[0] + "-eval"].trials
        sources = {t.user_attrs["source_trial"] for t in evals if t.user_attrs["study"] == study.user_attrs["study"]}
        assert sources == {best}, name
        arm = next(a for a in doc["arms"] if a["label"] == _label(study))
        assert arm["studies"][study.user_attrs["study"]]["best_value"] == pytest.approx(scores[best])
    # The transferred config: width 2's highest-scoring config over its three studies.
    width2 = [(tuning_score(t, "maximize"), -k, -t.number, k, t.number) for n, s in tune.items()
              if _label(s) == "width 2" for k in [s.user_attrs["study"]] for t in s.trials]
    *_, k, number = max(width2)
    transfer = [t.user_attrs for n, s in studies.items() if n.endswith("-transfer") for t in s.trials]
    assert {(a["source_study"], a["source_trial"]) for a in transfer} == {(k, number)}
    # The report: the widest arm is best on every comparison, and every ranking reads best (highest) first.
    order = ["width 8", "width 4", "width 2"]
    for key in ("test", "baseline", "transfer"):
        assert doc["comparisons"][key]["order"] == order, key
    v = doc["verdict"]
    assert (v["winner"], v["groups"]) == ("width 8", [["width 8"], ["width 4"], ["width 2"]])
    assert v["fixed_winner"] == v["transfer_winner"] == "width 8"
    assert v["tuned_text"].startswith("width 8 is best: its geometric-mean test accuracy is 1.1")  # 0.8 / 0.7
    assert "that of the runner-up width 4" in v["tuned_text"] and "higher is better" in v["tuned_text"]
    assert v["basis"] == "re-evaluated test accuracy"
    assert doc["budget"]["equal_trials"]["ranking"] == order
    for curve in doc["tuning"].values():
        for s in curve["studies"]:
            assert s["best"] == sorted(s["best"])  # best-so-far rises
        band = curve["expected_best_of_n"]
        assert max(band["high"]) <= max(max(s["best"]) for s in curve["studies"]) + 1e-12  # clipped at the top
    pair = next(p for p in doc["comparisons"]["test"]["pairs"] if (p["a"], p["b"]) == ("width 2", "width 8"))
    assert pair["decision"] == "b" and pair["ratio"] < 1 / 1.1 and pair["p_a_better"] < 0.5
    assert all(d["still_improving"] is not None for d in doc["diagnostics"].values())
    assert all(t["tuner_optimism"] is not None for t in doc["test"].values())


def _label(study: Any) -> str:
    import json

    return ", ".join(f"{k} {v}" for k, v in json.loads(study.user_attrs["arm"]).items())


@pytest.mark.slow
@pytest.mark.timeout(300)
@ONE_RUN
def test_maximize_report_files_say_higher_is_better(maximized: tuple[dict[str, Any], str], tmp_path: Path) -> None:
    doc, _ = maximized
    from bench.report.render import markdown

    md = markdown(doc, {"best_of_n", "test_scores"})
    assert "(ratio A/B > 1: A is better; higher is better)" in md
    assert "Best validation accuracy so far, in trial order (higher is better)" in md
    assert "Validation accuracy vs learning rate" in md and "bits" not in md
    assert "Score: accuracy, higher is better" in md
    assert "Test accuracy over fresh seeds: tuned vs fixed and transferred configs (higher is better)" in md


@pytest.mark.slow
@pytest.mark.timeout(300)
@ONE_RUN
def test_minimizing_the_error_ranks_arms_as_maximizing_the_accuracy(maximized: tuple[dict[str, Any], str],
                                                                    tmp_path: Path) -> None:
    """The same runs (random sampler: the same configs; the median pruner mirrors), scored as 1 - accuracy and
    minimized: every ranking, winner and decision must agree with the maximized accuracy."""
    up, _ = maximized
    down, _ = _run(tmp_path, accuracy_spec("err_demo", error=True))
    assert down["settings"]["direction"] == "minimize"
    for key in ("test", "baseline", "transfer"):
        a, b = up["comparisons"][key], down["comparisons"][key]
        assert (a["order"], a["groups"], a["winner"]) == (b["order"], b["groups"], b["winner"]), key
        assert [p["decision"] for p in a["pairs"]] == [p["decision"] for p in b["pairs"]], key
    assert up["budget"]["equal_trials"]["ranking"] == down["budget"]["equal_trials"]["ranking"]
    assert [[s["best_trial"] for s in a["studies"]] for a in up["arms"]] == \
        [[s["best_trial"] for s in a["studies"]] for a in down["arms"]]
    for a, b in zip(up["arms"], down["arms"], strict=True):
        assert a["best_value"] == pytest.approx(1 - b["best_value"]) and a["by_outcome"] == b["by_outcome"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_accuracy_example_runs_through_the_cli_maximizing(tmp_path: Path) -> None:
    """README: `PYTHONPATH=examples bench run examples/numpy_logreg_accuracy.toml`."""
    import json
    import subprocess
    import sys

    from tests.test_trainer import _example_env

    cmd = [sys.executable, "-m", "bench", "run", str(EXAMPLES / "numpy_logreg_accuracy.toml"), "--storage",
           f"sqlite:///{tmp_path / 'db'}", "--out", str(tmp_path / "rep"), "--workers", "1", "--threads", "1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_example_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "accuracy: higher is better" in proc.stdout
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert doc["settings"]["direction"] == "maximize" and doc["complete"]
    assert {a["label"]: [s["n_finished"] for s in a["studies"]] for a in doc["arms"]} == \
        {"features linear": [4, 4, 4], "features quadratic": [4, 4, 4]}
    for a in doc["arms"]:
        assert a["best_value"] == max(s["best_value"] for s in a["studies"]) > 0.5  # accuracies, best = highest
        assert doc["test"][a["label"]]["n_seeds"] == 3 * 2
    assert {a["label"]: a["n_params"] for a in doc["arms"]} == {"features linear": 3, "features quadratic": 8}


# ---------------------------------------------------------------- the report's own oriented pieces, mirrored


def test_scores_are_capped_at_worst_from_the_bad_side() -> None:
    from bench.report.build import _score

    assert [_score(v, "complete", 0.5, -1) for v in (0.3, 0.7)] == [0.5, 0.7]  # maximize: a floor
    assert [_score(v, "complete", 0.5, 1) for v in (0.3, 0.7)] == [0.3, 0.5]  # minimize: a ceiling
    assert _score(0.9, "diverged", 0.5, -1) == _score(None, "complete", 0.5, -1) == 0.5


def test_expected_best_band_is_clipped_at_the_best_observed_value_on_its_side() -> None:
    import numpy as np

    from bench.report.build import _expected_best

    pool = np.array([0.1, 0.2, 0.9])
    up, down = _expected_best(pool, "maximize"), _expected_best(-pool, "minimize")
    assert up["mean"] == pytest.approx([-m for m in down["mean"]])
    assert up["high"] == pytest.approx([-x for x in down["low"]]) and max(up["high"]) <= 0.9
    assert up["low"] == pytest.approx([-x for x in down["high"]])
    assert up["mean"][0] == pytest.approx(0.4) and up["mean"][-1] > up["mean"][0]  # n = 1: the mean; rising


def _curves(values: dict[str, list[list[float]]]) -> dict[str, Any]:
    """tuning_curves-shaped input: per arm, per study best-so-far values, one second per trial."""
    import numpy as np

    out = {}
    for arm, studies in values.items():
        grid = np.array(studies)
        out[arm] = {"studies": [{"study": k, "best": s, "seconds": [float(i + 1) for i in range(len(s))]}
                                for k, s in enumerate(studies)], "median": np.median(grid, axis=0).tolist()}
    return out


def test_budget_analysis_reads_a_maximized_score_highest_first_and_mirrors_the_minimized_one() -> None:
    from bench.report.build import budget_analysis

    # fast: ahead at 1-2 trials; slow: overtakes at trial 3 and ends higher (by hand).
    up = {"fast": [[0.6, 0.7, 0.7, 0.7], [0.6, 0.7, 0.7, 0.7]], "slow": [[0.3, 0.5, 0.8, 0.9], [0.3, 0.5, 0.9, 0.9]]}
    down = {k: [[-v for v in s] for s in ss] for k, ss in up.items()}
    a, b = budget_analysis(_curves(up), "maximize"), budget_analysis(_curves(down), "minimize")
    assert a["equal_trials"]["ranking"] == b["equal_trials"]["ranking"] == ["slow", "fast"]
    assert a["crossings"] == b["crossings"] == [{"a": "fast", "b": "slow", "at_n": [3], "ahead_at_end": "slow"}]
    assert a["target"] == pytest.approx(0.9) and b["target"] == pytest.approx(-0.9)
    assert a["to_target"] == b["to_target"]
    assert a["to_target"]["slow"] == {"trials": 3.5, "seconds": 3.5, "studies_reached": 2, "studies": 2}
    assert a["to_target"]["fast"]["studies_reached"] == 0
    assert a["equal_compute"]["ranking"] == b["equal_compute"]["ranking"]


def test_untested_verdict_names_the_highest_tuning_score_when_maximizing() -> None:
    from bench.report.verdict import verdict

    def doc(direction: str) -> dict[str, Any]:
        arms = [{"label": label, "median_best_value": v, "total_seconds": 1.0, "n_params": None}
                for label, v in (("width 2", 0.6), ("width 8", 0.8))]
        return {"arms": arms, "settings": {"direction": direction, "studies": 2, "adaptive_sampler": False},
                "metric": "accuracy", "comparisons": {}, "budget": {}, "missing": []}

    up, down = verdict(doc("maximize")), verdict(doc("minimize"))
    assert "By tuning-time validation accuracy (optimistic, untested) width 8 leads" in up["text"]
    assert up["basis"] == "best tuning validation accuracy (untested)"
    assert "By tuning-time validation loss (optimistic, untested) width 2 leads" in down["text"]
