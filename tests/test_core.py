"""The core loop on SQLite: exact budgets, divergence counted, resume, refusal of a changed spec, invariant 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from bench.cli import main
from bench.service.run import attach, init_experiment
from bench.service.worker import WorkerLoop, WorkerOptions
from bench.spec import ParamSpec, load_spec
from bench.store.ledger import Ledger, SpecMismatch
from bench.store.storage import make_engine, optuna_storage
from bench.tuning.search_space import distribution, suggest
from bench.tuning.studies import spec_study_name
from tests.conftest import tiny_spec


def run_worker(spec_path: Path, url: str, **kw: object) -> WorkerLoop:
    spec = load_spec(spec_path)
    init_experiment(spec, url)
    loop = WorkerLoop(spec, url, attach(spec, url), WorkerOptions(lease_seconds=30, poll_seconds=0.2, **kw))  # type: ignore[arg-type]
    loop.run()
    return loop


def done_by_depth(url: str, name: str, role: str = "tune") -> dict[int, list[str]]:
    engine = make_engine(url)
    ledger = Ledger(engine, Ledger.find_experiment(engine, name)[0])  # type: ignore[index]
    out: dict[int, list[str]] = {}
    for s in ledger.slots(role):
        out.setdefault(json.loads(s["arm"])["depth"], []).append(s["state"])
    engine.dispose()
    return out


def test_exact_budget_and_invariant_2(tmp_path: Path, sqlite_url: str) -> None:
    path = tiny_spec(tmp_path, budget={"trials": 3, "epochs": 1, "batch_size": 32})
    run_worker(path, sqlite_url)
    storage = optuna_storage(sqlite_url)
    spec = load_spec(path)
    dists = []
    for arm in spec.arms:
        depth = arm.depth
        study = optuna.load_study(study_name=spec_study_name(spec, arm), storage=storage)
        finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(finished) == 3
        assert {"experiment": "tiny", "depth": depth, "spec_hash": spec.hash, "role": "tune"}.items() <= \
            study.user_attrs.items()
        dists.append({n: d for t in finished for n, d in t.distributions.items()})
        # Every trial is stamped with provenance.
        for t in finished:
            assert {"seconds", "n_params", "epochs_run", "bench_slot"} <= set(t.user_attrs)
            prov = t.user_attrs["provenance"]
            assert {"device", "torch_threads", "bench_version", "host", "worker", "attempt"} <= set(prov)
            assert prov["spec_hash"] == spec.hash and prov["role"] == "tune"
    assert all(d == dists[0] for d in dists), "every depth must search the same space"
    assert done_by_depth(sqlite_url, "tiny") == {1: ["done"] * 3, 2: ["done"] * 3}


def test_diverged_trials_count_toward_the_budget(tmp_path: Path, sqlite_url: str) -> None:
    path = tiny_spec(tmp_path, name="div", task={"name": "tests.nan_task:make_task"})
    run_worker(path, sqlite_url)
    engine = make_engine(sqlite_url)
    ledger = Ledger(engine, Ledger.find_experiment(engine, "div")[0])  # type: ignore[index]
    outcomes = [s["outcome"] for s in ledger.slots("tune")]
    assert outcomes == ["diverged"] * 4
    study = optuna.load_study(study_name="div-depth1", storage=optuna_storage(sqlite_url))
    assert all(t.state == TrialState.COMPLETE and t.value == float("inf") for t in study.trials)


def test_resume_never_exceeds_budget(tmp_path: Path, sqlite_url: str) -> None:
    path = tiny_spec(tmp_path, budget={"trials": 3, "epochs": 1, "batch_size": 32})
    run_worker(path, sqlite_url, max_trials=2)
    partial = done_by_depth(sqlite_url, "tiny")
    assert sorted(partial[1] + partial[2]).count("done") == 2
    assert partial[1].count("done") == partial[2].count("done") == 1, "depths advance in turn"
    run_worker(path, sqlite_url)
    run_worker(path, sqlite_url)  # a finished experiment stays finished
    assert done_by_depth(sqlite_url, "tiny") == {1: ["done"] * 3, 2: ["done"] * 3}


@pytest.mark.timeout(300)  # end to end: a real run (subprocesses or several studies)
def test_ctrl_c_then_rerun_finishes_exactly(tmp_path: Path, sqlite_url: str) -> None:
    path = tiny_spec(tmp_path, budget={"trials": 30, "epochs": 3, "batch_size": 16})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    cmd = [sys.executable, "-m", "bench", "run", str(path), "--storage", sqlite_url, "--workers", "2",
           "--no-report"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.5)
        if os.path.exists(sqlite_url[len("sqlite:///"):]):
            try:
                if sum(v.count("done") for v in done_by_depth(sqlite_url, "tiny").values()) >= 4:
                    break
            except (sa.exc.OperationalError, TypeError):
                pass
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped by SIGINT" in err and "Traceback" not in err, err
    states = [s for v in done_by_depth(sqlite_url, "tiny").values() for s in v]
    assert "claimed" not in states, "an interrupted trial must give its slot back"
    assert 4 <= states.count("done") < 60
    storage = optuna_storage(sqlite_url)
    assert main(["run", str(path), "--storage", sqlite_url, "--no-report"]) == 0
    assert done_by_depth(sqlite_url, "tiny") == {1: ["done"] * 30, 2: ["done"] * 30}
    for depth in (1, 2):
        study = optuna.load_study(study_name=f"tiny-depth{depth}", storage=storage)
        counted = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(counted) == 30
        for t in study.trials:
            if t.state == TrialState.FAIL:
                assert t.user_attrs["bench_lost"] == "interrupted"


def test_changed_spec_is_refused_naming_fields(tmp_path: Path, sqlite_url: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_spec(tmp_path)
    assert main(["init", str(path), "--storage", sqlite_url]) == 0
    assert main(["init", str(path), "--storage", sqlite_url]) == 0  # same spec: idempotent
    (tmp_path / "v2").mkdir()
    changed = tiny_spec(tmp_path / "v2", budget={"trials": 5, "epochs": 1, "batch_size": 32},
                        search_space={"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}})
    capsys.readouterr()
    for cmd in ("init", "worker", "run", "status"):
        assert main([cmd, str(changed), "--storage", sqlite_url]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"bench: error: {changed}: experiment 'tiny' exists")
        assert "budget.trials" in err and "search_space.lr.high" in err and "search_space.init" in err
        assert len(err.strip().splitlines()) == 1
    with pytest.raises(SpecMismatch):
        attach(load_spec(changed), sqlite_url)


def test_search_space_mapping() -> None:
    specs = [ParamSpec("lr", "float", 1e-4, 1e-1, log=True), ParamSpec("dropout", "float", 0.0, 0.5, step=0.1),
             ParamSpec("init", "categorical", choices=("default", "orthogonal"))]
    d = [distribution(p) for p in specs]
    assert d[0] == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert d[1] == optuna.distributions.FloatDistribution(0.0, 0.5, step=0.1)
    assert d[2] == optuna.distributions.CategoricalDistribution(["default", "orthogonal"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        params = suggest(study.ask(), tuple(specs))
        assert 1e-4 <= params["lr"] <= 1e-1
        assert round(params["dropout"] * 10) == pytest.approx(params["dropout"] * 10)
        assert params["init"] in ("default", "orthogonal")


@pytest.mark.timeout(300)  # end to end: a real run (subprocesses or several studies)
def test_cli_end_to_end_run_then_report(tmp_path: Path, sqlite_url: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_spec(tmp_path)
    out = tmp_path / "rep"
    assert main(["run", str(path), "--storage", sqlite_url, "--workers", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "report.json" in printed and "per arm" in printed
    doc = json.loads((out / "report.json").read_text())
    assert doc["experiment"] == "tiny" and doc["spec_hash"] == load_spec(path).hash
    assert [a["depth"] for a in doc["arms"]] == [1, 2]
    for a in doc["arms"]:
        assert a["n_finished"] == 2 and a["best_value"] > 0 and set(a["best_params"]) == {"lr", "init", "dropout"}
        assert a["n_params"] > 0 and a["mean_trial_seconds"] > 0
    assert doc["arms"][1]["n_params"] > doc["arms"][0]["n_params"]
    assert "# bench report: tiny" in (out / "report.md").read_text()
    out2 = tmp_path / "rep2"
    assert main(["report", str(path), "--storage", sqlite_url, "--out", str(out2)]) == 0
    assert json.loads((out2 / "report.json").read_text())["arms"] == doc["arms"]


def test_bad_input_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "sub" / "b.db"
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\ndepths = [1]\n[task]\nname='seq2seq'\n[search_space]\n"
                   "lr = {type='float', low=0.1, high=0.01}\n[budget]\ntrials=1\nepochs=1\n")
    assert main(["run", str(bad), "--storage", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"bench: error: {bad}: search_space.lr.low: low 0.1 must be below high 0.01"
    assert not db.parent.exists()
    good = tiny_spec(tmp_path, task={"name": "seq2seq", "length": -4})
    assert main(["init", str(good), "--storage", f"sqlite:///{db}"]) == 2
    assert "task.length" in capsys.readouterr().err
    assert not db.parent.exists()
    assert main(["init", str(tiny_spec(tmp_path, name="fine")), "--storage", "oracle://x/y"]) == 2
    assert "--storage: unsupported database 'oracle'" in capsys.readouterr().err
    assert main(["worker", str(tiny_spec(tmp_path, name="never")), "--storage", f"sqlite:///{tmp_path}/c.db"]) == 2
    assert "run `bench init`" in capsys.readouterr().err


def test_matched_params_sizes_are_part_of_the_hash(tmp_path: Path, sqlite_url: str) -> None:
    from bench.service.run import validate

    path = tiny_spec(tmp_path, name="matched", depths=[1, 3],
                     model={"cell": "gru", "embedding": 4, "capacity": "matched_params", "target_params": 3000})
    raw = load_spec(path)
    spec = validate(raw)
    sizes = dict(spec.model.hidden_by_depth)
    assert sizes[1] > sizes[3] > 0, sizes  # deeper nets get narrower layers at equal parameter count
    assert spec.hash != raw.hash and "hidden_by_depth" in json.dumps(spec.to_dict())
    assert main(["run", str(path), "--storage", sqlite_url, "--workers", "1", "--out", str(tmp_path / "r")]) == 0
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    counts = {a["depth"]: a["n_params"] for a in doc["arms"]}
    assert all(abs(n - 3000) <= 150 for n in counts.values()), counts
    hidden = {a["arm"]: a["hidden"] for a in doc["fairness"]["asymmetries"]}
    assert hidden == {f"depth {d}": h for d, h in sizes.items()}
    assert doc["spec_hash"] == spec.hash


@pytest.mark.timeout(300)  # end to end: a real run (subprocesses or several studies)
def test_replicated_studies_evaluation_and_baselines_end_to_end(tmp_path: Path, sqlite_url: str) -> None:
    """2 studies per depth, each exact; each study's best re-evaluated; fixed and transferred configs everywhere."""
    path = tiny_spec(tmp_path, name="phases", evaluation={"seeds": 2, "top_k": 1},
                     baseline={"lr": 0.01, "from_depth": 1}, budget={"studies": 2})
    assert main(["run", str(path), "--storage", sqlite_url, "--workers", "2", "--out", str(tmp_path / "r")]) == 0
    spec = load_spec(path)
    engine = make_engine(sqlite_url)
    ledger = Ledger(engine, Ledger.find_experiment(engine, "phases")[0])  # type: ignore[index]
    slots = ledger.slots()
    engine.dispose()
    per = {}
    for s in slots:
        assert s["state"] == "done"
        key = (s["role"], json.loads(s["arm"])["depth"], s["study"])
        per[key] = per.get(key, 0) + 1
    assert per == {**{("tune", d, k): 2 for d in (1, 2) for k in (0, 1)},  # exact per study
                   **{("eval", d, k): 2 for d in (1, 2) for k in (0, 1)},  # each study's best x 2 seeds
                   **{("baseline", d, 0): 2 for d in (1, 2)}, **{("transfer", d, 0): 2 for d in (1, 2)}}
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["complete"] and doc["missing"] == []
    for a in doc["arms"]:
        t, b, x = (doc[key][a["label"]] for key in ("test", "baseline", "transfer"))
        assert t["unit"] == "study" and t["n_studies"] == 2 and t["n_seeds"] == 4 and len(t["units"]) == 2
        assert [s["params"] for s in t["per_study"]] == [s["best_params"] for s in a["studies"]]
        assert b["unit"] == "seed" and b["n_seeds"] == 2 and b["per_study"][0]["params"] == {"lr": 0.01}
        depth1 = doc["arms"][0]
        best1 = min(depth1["studies"], key=lambda s: (s["best_value"], s["study"]))
        assert x["per_study"][0]["params"] == best1["best_params"]  # depth 1's best, reused at every depth
    assert {k for k, v in doc["comparisons"].items() if v} == {"test", "baseline", "transfer"}
    assert doc["verdict"]["basis"] == "re-evaluated test loss"
    storage = optuna_storage(sqlite_url)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert names == {f"phases-depth{d}{suffix}" for d in (1, 2)
                     for suffix in ("-s0", "-s1", "-eval", "-baseline", "-transfer")}
    ev = optuna.load_study(study_name="phases-depth1-eval", storage=storage)
    seeds = sorted(t.user_attrs["seed"] for t in ev.trials)
    assert sorted({t.user_attrs["study"] for t in ev.trials}) == [0, 1]
    base = optuna.load_study(study_name="phases-depth2-baseline", storage=storage)
    assert seeds == [10000, 10000, 10001, 10001]
    assert sorted(t.user_attrs["seed"] for t in base.trials) == [10000, 10001]  # the same fresh seeds
    assert all(t.user_attrs["test_loss"] > 0 for t in ev.trials)
    # Replicate studies differ in their sampler seed: their trials are not copies of each other.
    s0, s1 = (optuna.load_study(study_name=f"phases-depth1-s{k}", storage=storage) for k in (0, 1))
    assert [t.params for t in s0.trials] != [t.params for t in s1.trials]
    assert spec.budget.studies == 2
    rows = (tmp_path / "r" / "trials.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 8 + 8 + 4 + 4  # header, tune, eval, baseline, transfer


def stall_once(monkeypatch: pytest.MonkeyPatch, run_name: str, rescuer: WorkerLoop) -> dict[str, bool]:
    """Make the worker's first run (bench.service.worker.<run_name>) stall past its 0.5 s lease, with no heartbeat in
    between, while `rescuer` takes the slot back. Returns the flag that says the stall happened."""
    import bench.service.worker as worker_mod

    real = getattr(worker_mod, run_name)
    stalled = {"done": False}

    def stall(*args: object, **kwargs: object) -> object:
        out = real(*args, **kwargs)
        if not stalled["done"]:
            stalled["done"] = True
            time.sleep(0.6)  # past the 0.5 s lease
            rescuer._settle_expired()  # another worker reclaims the slot (failing its trial, if it has one)
        return out

    monkeypatch.setattr(worker_mod, run_name, stall)
    return stalled


@pytest.mark.timeout(300)  # end to end: a real run (subprocesses or several studies)
def test_stalled_worker_loses_its_trial_but_carries_on(tmp_path: Path, sqlite_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A live worker whose lease expired (a stall, clock skew) finds its trial failed by a reclaimer: that run is
    lost, not counted, and the worker goes on without crashing; the budget still ends exact."""
    path = tiny_spec(tmp_path, depths=[1], budget={"trials": 2, "epochs": 1, "batch_size": 32})
    spec = load_spec(path)
    init_experiment(spec, sqlite_url)
    exp = attach(spec, sqlite_url)
    rescuer = WorkerLoop(spec, sqlite_url, exp, WorkerOptions(lease_seconds=30))
    stall_once(monkeypatch, "run_tuning_trial", rescuer)
    slow = WorkerLoop(spec, sqlite_url, exp, WorkerOptions(lease_seconds=0.5, heartbeat_seconds=60, poll_seconds=0.1))
    summary = slow.run()
    assert summary.lost_own == 1 and rescuer.summary.reclaimed == 1
    assert summary.finished == {"complete": 2}
    study = optuna.load_study(study_name="tiny-depth1", storage=optuna_storage(sqlite_url))
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]
    assert done_by_depth(sqlite_url, "tiny") == {1: ["done", "done"]}


@pytest.mark.timeout(300)
def test_stalled_evaluation_worker_records_its_seed_once(tmp_path: Path, sqlite_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An evaluation run whose lease expired while it trained (and whose slot another worker took back) is not
    recorded: the slot's seed is run again and the eval study holds exactly one COMPLETE trial per slot."""
    path = tiny_spec(tmp_path, depths=[1, 2], budget={"trials": 1, "epochs": 1, "batch_size": 32},
                     evaluation={"seeds": 1})
    spec = load_spec(path)
    init_experiment(spec, sqlite_url)
    exp = attach(spec, sqlite_url)
    rescuer = WorkerLoop(spec, sqlite_url, exp, WorkerOptions(lease_seconds=30))
    stalled = stall_once(monkeypatch, "run_fixed", rescuer)
    slow = WorkerLoop(spec, sqlite_url, exp, WorkerOptions(lease_seconds=0.5, heartbeat_seconds=60, poll_seconds=0.1))
    slow.run()
    assert stalled["done"] and rescuer.summary.reclaimed == 1
    storage = optuna_storage(sqlite_url)
    for d in (1, 2):
        study = optuna.load_study(study_name=f"tiny-depth{d}-eval", storage=storage)
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        assert len(complete) == 1, [t.state.name for t in study.trials]  # never a duplicate for one seed
    engine = make_engine(sqlite_url)
    slots = Ledger(engine, exp).slots("eval")
    engine.dispose()
    assert len(slots) == 2 and all(s["state"] == "done" for s in slots)


def test_report_refuses_a_changed_spec(tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tiny_spec(tmp_path)
    assert main(["init", str(path), "--storage", sqlite_url]) == 0
    (tmp_path / "v2").mkdir()
    changed = tiny_spec(tmp_path / "v2", budget={"trials": 9, "epochs": 1, "batch_size": 32})
    capsys.readouterr()
    assert main(["report", str(changed), "--storage", sqlite_url, "--out", str(tmp_path / "r")]) == 2
    assert "budget.trials" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
