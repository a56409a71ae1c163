"""The mutation score per module from mutmut's results in mutants/ (`make mutation`, docs/mutation.md).

score = killed / (mutants checked - equivalent), where killed includes timeouts (a mutant that makes a test hang
is caught by pytest-timeout) and "no tests" counts as survived (nothing covering that code ran). Mutants reviewed
as equivalent are listed with their reason in tests/mutation_equivalent.txt and left out of the denominator.
Usage: ``python tests/mutation_score.py [PREFIX]`` (e.g. bench.report.stats); exits 1 when a fully checked module
scores below --min (default 85), or with --sample when a module's whole interval lies below it.

A complete run of every module takes hours here, and a run stopped part-way has checked the first functions of
each file, not a fair share of them. ``--draw N`` picks N mutants per module uniformly at random (seeded) and
writes their names to mutants/sample.txt for ``mutmut run``; ``--sample`` then scores only those, with a 95%
Clopper-Pearson interval per module (Clopper & Pearson 1934, Biometrika 26:404; exact, so it covers at least 95%
of the time; drawing without replacement from a finite module only narrows the true spread).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = ROOT / "tests" / "mutation_equivalent.txt"
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          37: "killed", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"}


def equivalent() -> dict[str, str]:
    """mutant name -> why it is equivalent (lines ``name  reason``; # starts a comment line)."""
    out: dict[str, str] = {}
    if EQUIVALENT.exists():
        for line in EQUIVALENT.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                name, _, reason = line.strip().partition(" ")
                out[name] = reason.strip()
    return out


def results() -> dict[str, str]:
    """mutant name -> status, over every .meta file mutmut wrote."""
    out: dict[str, str] = {}
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            out[name] = STATUS.get(code, "suspicious")
    return out


def module_of(name: str) -> str:
    return name.rsplit(".", 1)[0]


def sample_file() -> Path:
    return ROOT / "mutants" / "sample.txt"


def draw(names: list[str], n: int, seed: int) -> list[str]:
    """n names per module (all of a smaller module), uniformly without replacement, reproducible from seed."""
    by_module: dict[str, list[str]] = defaultdict(list)
    for name in sorted(names):
        by_module[module_of(name)].append(name)
    rng = random.Random(seed)
    return [name for module in sorted(by_module)
            for name in sorted(rng.sample(by_module[module], min(n, len(by_module[module]))))]


def interval(caught: int, n: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 95% interval for the share caught, from `caught` of `n` sampled mutants."""
    ci = binomtest(caught, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prefix", nargs="?", default="", help="mutant name prefix, e.g. bench.report.stats")
    ap.add_argument("--min", type=float, default=85.0, help="lowest acceptable score in percent")
    ap.add_argument("--survivors", action="store_true", help="list the surviving, non-equivalent mutants")
    ap.add_argument("--draw", type=int, metavar="N", help="draw N mutants per module into mutants/sample.txt")
    ap.add_argument("--seed", type=int, default=0, help="seed of --draw")
    ap.add_argument("--exclude", type=Path, nargs="+", default=[], metavar="FILE",
                    help="with --draw: leave out the names in these files (earlier samples whose survivors tests were "
                    "since written from, so that they no longer estimate the score; docs/mutation-samples/ keeps them)")
    ap.add_argument("--sample", action="store_true", help="score only the drawn mutants, with 95%% intervals")
    args = ap.parse_args(argv)
    status = {k: v for k, v in results().items() if fnmatch.fnmatch(k, args.prefix + "*")}
    if not status:
        print("no mutation results: run `make mutation MODULE=...` first")
        return 1
    if args.draw is not None:
        used = {name for path in args.exclude for name in path.read_text().split()}
        chosen = draw([k for k in status if k not in used], args.draw, args.seed)
        sample_file().write_text("\n".join(chosen) + "\n")
        print(f"{len(chosen)} mutants drawn into {sample_file().relative_to(ROOT)}")
        return 0
    if args.sample:
        if not sample_file().exists():
            print("no sample drawn: run `python tests/mutation_score.py --draw N` first")
            return 1
        drawn = set(sample_file().read_text().split())
        status = {k: v for k, v in status.items() if k in drawn}
    equiv = equivalent()
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    survivors = []
    for name, s in status.items():
        s = "equivalent" if s in ("survived", "no tests") and name in equiv else s
        by_module[module_of(name)][s] += 1
        if s in ("survived", "no tests"):
            survivors.append(name)
    print(f"{'module':28s} {'mutants':>7s} {'checked':>7s} {'killed':>6s} {'timeout':>7s} {'survived':>8s} "
          f"{'no tests':>8s} {'equiv':>5s} {'score':>6s}" + ("  95% interval" if args.sample else ""))
    worst = 100.0
    for module, c in sorted(by_module.items()):
        checked = sum(c.values()) - c["not checked"] - c["skipped"]
        if not checked:
            continue  # not run yet
        caught = c["killed"] + c["timeout"]
        denom = checked - c["equivalent"]
        score = 100.0 * caught / denom if denom else float("nan")
        if c["not checked"] == 0 and denom and not args.sample:
            worst = min(worst, score)
        note = "  (partial)" if c["not checked"] else ""
        if args.sample and denom:
            low, high = interval(caught, denom)
            note = f"  {100 * low:.1f}-{100 * high:.1f}%" + (" (sample partly run)" if c["not checked"] else "")
            if not c["not checked"]:
                worst = min(worst, 100 * high)  # fails only when the whole interval is below --min
        print(f"{module:28s} {sum(c.values()):7d} {checked:7d} {c['killed']:6d} {c['timeout']:7d} {c['survived']:8d} "
              f"{c['no tests']:8d} {c['equivalent']:5d} {score:5.1f}%" + note)
    if args.survivors:
        print("\nsurviving (not reviewed as equivalent):")
        for name in sorted(survivors):
            print("  " + name)
    return 0 if worst >= args.min else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
