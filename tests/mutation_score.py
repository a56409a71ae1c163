"""The mutation score per module from mutmut's results in mutants/ (`make mutation`, docs/mutation.md).

score = killed / (mutants checked - equivalent), where killed includes timeouts (a mutant that makes a test hang
is caught by pytest-timeout) and "no tests" counts as survived (nothing covering that code ran). Mutants reviewed
as equivalent are listed with their reason in tests/mutation_equivalent.txt and left out of the denominator.
Usage: ``python tests/mutation_score.py [PREFIX]`` (e.g. bench.report.stats); exits 1 below --min (default 85).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

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


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prefix", nargs="?", default="", help="mutant name prefix, e.g. bench.report.stats")
    ap.add_argument("--min", type=float, default=85.0, help="lowest acceptable score in percent")
    ap.add_argument("--survivors", action="store_true", help="list the surviving, non-equivalent mutants")
    args = ap.parse_args(argv)
    status = {k: v for k, v in results().items() if fnmatch.fnmatch(k, args.prefix + "*")}
    if not status:
        print("no mutation results: run `make mutation MODULE=...` first")
        return 1
    equiv = equivalent()
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    survivors = []
    for name, s in status.items():
        s = "equivalent" if s in ("survived", "no tests") and name in equiv else s
        by_module[module_of(name)][s] += 1
        if s in ("survived", "no tests"):
            survivors.append(name)
    print(f"{'module':28s} {'mutants':>7s} {'checked':>7s} {'killed':>6s} {'timeout':>7s} {'survived':>8s} "
          f"{'no tests':>8s} {'equiv':>5s} {'score':>6s}")
    worst = 100.0
    for module, c in sorted(by_module.items()):
        checked = sum(c.values()) - c["not checked"] - c["skipped"]
        if not checked:
            continue  # not run yet
        caught = c["killed"] + c["timeout"]
        denom = checked - c["equivalent"]
        score = 100.0 * caught / denom if denom else float("nan")
        if c["not checked"] == 0 and denom:
            worst = min(worst, score)
        print(f"{module:28s} {sum(c.values()):7d} {checked:7d} {c['killed']:6d} {c['timeout']:7d} {c['survived']:8d} "
              f"{c['no tests']:8d} {c['equivalent']:5d} {score:5.1f}%" + ("  (partial)" if c["not checked"] else ""))
    if args.survivors:
        print("\nsurviving (not reviewed as equivalent):")
        for name in sorted(survivors):
            print("  " + name)
    return 0 if worst >= args.min else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
