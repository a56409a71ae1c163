"""tests/mutation_score.py on hand-made mutmut results: the score, the equivalents, the random draw and the
sample interval (checked against Clopper-Pearson values worked out by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_script

ms = load_script("tests/mutation_score.py", "mutation_score_under_test")


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout whose mutants/ holds: module a.b with 4 killed, 1 timeout, 2 survived (one of them reviewed
    equivalent), 1 not checked; module a.c with 3 killed, 1 with no tests, complete."""
    codes = {"a.b.x_f__mutmut_1": 1, "a.b.x_f__mutmut_2": 1, "a.b.x_f__mutmut_3": 3, "a.b.x_f__mutmut_4": 37,
             "a.b.x_f__mutmut_5": 36, "a.b.x_f__mutmut_6": 0, "a.b.x_f__mutmut_7": 0, "a.b.x_f__mutmut_8": None}
    other = {"a.c.x_g__mutmut_1": 1, "a.c.x_g__mutmut_2": 1, "a.c.x_g__mutmut_3": 1, "a.c.x_g__mutmut_4": 33}
    (tmp_path / "mutants" / "a").mkdir(parents=True)
    (tmp_path / "mutants" / "a" / "b.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))
    (tmp_path / "mutants" / "a" / "c.py.meta").write_text(json.dumps({"exit_code_by_key": other}))
    (tmp_path / "tests").mkdir()
    equivalent = tmp_path / "tests" / "mutation_equivalent.txt"
    equivalent.write_text("# comment\n\na.b.x_f__mutmut_7  same output for every input\n")
    monkeypatch.setattr(ms, "ROOT", tmp_path)
    monkeypatch.setattr(ms, "EQUIVALENT", equivalent)
    return tmp_path


def _rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:] if line.startswith("a.")}


def test_score_counts_timeouts_as_caught_and_leaves_equivalents_out(root: Path, capsys: pytest.CaptureFixture[str]
                                                                    ) -> None:
    # a.b: 5 caught (4 killed + 1 timeout) of 7 checked - 1 equivalent = 83.3%, partial; a.c: 3 of 4 = 75.0%
    assert ms.main(["--survivors"]) == 1  # a.c is complete and below 85%
    out = capsys.readouterr().out
    rows = _rows(out)
    assert rows["a.b"] == ["8", "7", "4", "1", "1", "0", "1", "83.3%", "(partial)"]
    assert rows["a.c"] == ["4", "4", "3", "0", "0", "1", "0", "75.0%"]
    assert out.splitlines()[-2:] == ["  a.b.x_f__mutmut_6", "  a.c.x_g__mutmut_4"]
    assert ms.main(["a.b"]) == 0  # a.b alone is partial: no verdict on it
    assert ms.main(["a.c", "--min", "75"]) == 0


def test_draw_is_uniform_per_module_and_reproducible(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = [f"m{k}.x_f__mutmut_{i}" for k in range(2) for i in range(50)] + ["small.x_g__mutmut_1"]
    a, b, other = ms.draw(names, 10, 0), ms.draw(names, 10, 0), ms.draw(names, 10, 1)
    assert a == b and a != other and len(set(a)) == 21 and set(a) <= set(names)
    assert sum(n.startswith("m0.") for n in a) == 10 and "small.x_g__mutmut_1" in a  # all of a smaller module
    # each of 50 names is drawn with probability 10/50 = 0.2: over 500 seeds, 100 times on average (sd 8.9)
    hits = sum("m0.x_f__mutmut_7" in ms.draw(names, 10, seed) for seed in range(500))
    assert 60 < hits < 140
    assert ms.main(["--draw", "2", "--seed", "3"]) == 0
    drawn = (root / "mutants" / "sample.txt").read_text().split()
    assert len(drawn) == 4 and {n.split(".x_")[0] for n in drawn} == {"a.b", "a.c"}
    earlier = root / "earlier.txt"
    earlier.write_text("\n".join(drawn))
    assert ms.main(["--draw", "2", "--seed", "3", "--exclude", str(earlier)]) == 0
    fresh = (root / "mutants" / "sample.txt").read_text().split()
    assert len(fresh) == 4 and not set(fresh) & set(drawn)  # a second sample shares no mutant with the first
    second = root / "second.txt"
    second.write_text("\n".join(fresh))
    assert ms.main(["--draw", "2", "--seed", "4", "--exclude", str(earlier), str(second)]) == 0
    third = (root / "mutants" / "sample.txt").read_text().split()  # a.c's 4 are all used; a.b has 4 of 8 left
    assert len(third) == 2 and {n.split(".x_")[0] for n in third} == {"a.b"} and not set(third) & {*drawn, *fresh}


def test_interval_matches_clopper_pearson_by_hand() -> None:
    # 0 of n: upper bound 1 - 0.025^(1/n); n of n: lower bound 0.025^(1/n) (the exact interval's closed forms)
    for n in (5, 10, 60):
        assert ms.interval(0, n) == pytest.approx((0.0, 1 - 0.025 ** (1 / n)))
        assert ms.interval(n, n) == pytest.approx((0.025 ** (1 / n), 1.0))
    assert ms.interval(8, 10) == pytest.approx((0.4439, 0.9748), abs=1e-4)  # the standard table value


def test_sample_scores_only_the_drawn_mutants(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ms.main(["--sample"]) == 1
    assert "no sample drawn" in capsys.readouterr().out
    (root / "mutants" / "sample.txt").write_text("a.c.x_g__mutmut_1\na.c.x_g__mutmut_2\na.b.x_f__mutmut_8\n")
    # a.c: 2 of 2 caught, interval (0.025^(1/2), 1) = (15.8%, 100%); a.b: its one drawn mutant not yet run
    assert ms.main(["--sample"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["a.c"] == ["2", "2", "2", "0", "0", "0", "0", "100.0%", "15.8-100.0%"]
    assert "a.b" not in rows
    (root / "mutants" / "sample.txt").write_text("a.c.x_g__mutmut_4\n")  # 0 of 1: interval (0%, 97.5%)
    assert ms.main(["--sample"]) == 0  # too few to tell: the interval reaches above 85%
    assert _rows(capsys.readouterr().out)["a.c"][-1] == "0.0-97.5%"
    assert ms.main(["--sample", "--min", "98"]) == 1  # the whole interval below 98%
