"""Suites in the orchestration layer: validate, init, attach and summarise every member experiment.

Each member is an ordinary experiment (own hash, studies, slots, report); these functions only apply the
single-experiment ones to all members, checking every member before the first one is written (bad input in the
last member must leave no trace of the first).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from bench.service.run import InitResult, attach, build_task, init_experiment, readonly_spec, validate
from bench.service.status import fmt_seconds, is_complete, status, timing
from bench.spec import Spec, SpecError
from bench.store.ledger import Ledger
from bench.store.storage import make_engine, normalize_url
from bench.suite import Member, Suite, suite_field


@dataclass(frozen=True)
class Resolved:
    """A suite whose member specs are resolved (matched-capacity sizes filled in: the hashes init stores)."""

    suite: Suite
    specs: tuple[Spec, ...]  # in member order

    @property
    def members(self) -> tuple[Member, ...]:
        return self.suite.members


def _member_error(suite: Suite, m: Member, err: SpecError) -> SpecError:
    return SpecError(suite_field(str(err), suite.source, m.task, m.variant,
                                 dict(m.model)))


def resolve(suite: Suite, *, train: bool = True, url: str | None = None) -> Resolved:
    """Every member validated as `bench init` validates a spec (train=True: task data built and memory checked
    too), or as a read-only command resolves it (train=False, with the storage URL)."""
    specs = []
    for m in suite.members:
        try:
            if train:
                spec = validate(m.spec)
                build_task(spec)
            else:
                assert url is not None
                spec = readonly_spec(m.spec, url)
        except SpecError as err:
            raise _member_error(suite, m, err) from None
        specs.append(spec)
    return Resolved(suite, tuple(specs))


def init_suite(res: Resolved, url: str) -> list[InitResult]:
    """Init every member (each idempotent and safe to run concurrently, like `bench init`)."""
    return [init_experiment(spec, url) for spec in res.specs]


def attach_suite(res: Resolved, url: str, *, write: bool = True) -> list[int]:
    """Every member's experiment id, after checking each stored spec is the member's spec."""
    return [attach(spec, url, write=write) for spec in res.specs]


def suite_status(res: Resolved, url: str, started: float | None = None) -> dict[str, Any]:
    """The `bench status SUITE --json` document: totals, and each member's status document."""
    url = normalize_url(url)
    ids = attach_suite(res, url, write=False)
    engine = make_engine(url)
    try:
        return live_status(res, [Ledger(engine, i) for i in ids], started)
    finally:
        engine.dispose()


def summarise(name: str, members: dict[str, dict[str, Any]], started: float | None = None) -> dict[str, Any]:
    total = sum(m["total"] for m in members.values())
    finished = sum(m["finished"] for m in members.values())
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for m in members.values():
        for w in m["workers"]:
            seen.setdefault((w["host"], w["pid"]), w)
    out: dict[str, Any] = {"suite": name, "total": total, "finished": finished,
                           "complete": all(m["complete"] for m in members.values()),
                           "workers": len(seen), "members": members}
    if started is not None:
        out.update(timing(time.time() - started, finished, total))
    return out


def live_status(res: Resolved, ledgers: list[Ledger], started: float | None = None) -> dict[str, Any]:
    """The suite's status on ledgers already held (`bench run` refreshes it; suite_status opens them)."""
    return summarise(res.suite.name, {spec.name: status(spec, led, started)
                                      for spec, led in zip(res.specs, ledgers, strict=True)}, started)


def suite_complete(res: Resolved, ledgers: list[Ledger]) -> bool:
    return all(is_complete(spec, led.slots()) for spec, led in zip(res.specs, ledgers, strict=True))


def progress_line(st: dict[str, Any]) -> str:
    line = f"{st['suite']}: {st['finished']}/{st['total']} slots done in {len(st['members'])} experiments"
    if "elapsed" in st:
        line += f", elapsed {fmt_seconds(st['elapsed'])}, ETA {fmt_seconds(st.get('eta'))}"
    return line


def table(st: dict[str, Any]) -> Table:
    """One row per member experiment: slots done, tuning parity, live workers, complete."""
    title = f"{st['suite']}  {st['finished']}/{st['total']} slots"
    if "elapsed" in st:
        title += f"  elapsed {fmt_seconds(st['elapsed'])}  ETA {fmt_seconds(st.get('eta'))}"
    t = Table(title=Text(title), box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), show_edge=False)
    for header in ("experiment", "done", "parity", "workers", "complete"):
        t.add_column(Text(header), justify="left" if header == "experiment" else "right", min_width=len(header),
                     no_wrap=header != "experiment", overflow="fold")
    for name, m in st["members"].items():
        t.add_row(*(Text(c) for c in (name, f"{m['finished']}/{m['total']}", str(m["parity"]),
                                      str(len(m["workers"])), "yes" if m["complete"] else "no")))
    return t
