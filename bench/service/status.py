"""Progress of an experiment from the ledger alone: per role, arm and study: done by outcome, running, lost, best."""

from __future__ import annotations

import time
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from bench.spec import Spec
from bench.store.ledger import CLAIMED, DONE, OUTCOMES, ROLES, Ledger

LIVE_SECONDS = 60.0  # a worker whose heartbeat is older than this is not shown as live


def status(spec: Spec, ledger: Ledger, started: float | None = None) -> dict[str, Any]:
    """A JSON-ready summary (the `bench status --json` schema, documented in the README)."""
    slots = ledger.slots()
    workers = {w["id"]: w for w in ledger.workers()}
    now = time.time()
    phases: dict[str, list[dict[str, Any]]] = {}
    keys = [a.key for a in spec.arms]
    labels = {a.key: a.label for a in spec.arms}
    for role in ROLES:
        mine = [s for s in slots if s["role"] == role]
        if not mine:
            continue
        rows = []
        groups = sorted({(s["arm"], s["study"]) for s in mine},
                        key=lambda g: (keys.index(g[0]) if g[0] in keys else len(keys), g[1]))
        for arm, k in groups:
            ds = [s for s in mine if (s["arm"], s["study"]) == (arm, k)]
            done = [s for s in ds if s["state"] == DONE]
            values = [s["value"] for s in done if s["value"] is not None and s["outcome"] != "pruned"]
            running = [{"worker": s["worker_id"], "host": workers.get(s["worker_id"], {}).get("host"),
                        "since": s["claimed_at"]} for s in ds if s["state"] == CLAIMED]
            rows.append({
                "arm": labels.get(arm, arm), "study": k, "budget": len(ds), "done": len(done),
                "by_outcome": {o: sum(1 for s in done if s["outcome"] == o) for o in OUTCOMES},
                "running": running, "lost": sum(s["lost"] for s in ds),
                "best": spec.sign * min(spec.sign * v for v in values) if values else None,
                "seconds": sum(s["seconds"] or 0.0 for s in done),
            })
        phases[role] = rows
    by_id = {s["id"]: s for s in slots}
    tune = phases.get("tune", [])
    done_counts = [r["done"] for r in tune]
    total = sum(r["budget"] for rows in phases.values() for r in rows)
    finished = sum(r["done"] for rows in phases.values() for r in rows)
    out: dict[str, Any] = {
        "experiment": spec.name, "spec_hash": spec.hash, "direction": spec.direction, "phases": phases,
        "parity": (max(done_counts) - min(done_counts)) if done_counts else 0,
        "total": total, "finished": finished,
        "workers": [{"id": w["id"], "host": w["host"], "pid": w["pid"], "device": w["device"],
                     "current_slot": w["current_slot"], "current": _where(by_id.get(w["current_slot"]), labels),
                     "trials_done": w["trials_done"]}
                    for w in workers.values() if w["stopped_at"] is None and now - w["heartbeat_at"] < LIVE_SECONDS],
        "complete": is_complete(spec, slots),
    }
    if started is not None:
        out.update(timing(now - started, finished, total))
    return out


def timing(elapsed: float, finished: int, total: int) -> dict[str, float | None]:
    """`elapsed` and a linear `eta` (None until a slot is done, and once all are) for a status document."""
    return {"elapsed": elapsed, "eta": elapsed / finished * (total - finished) if finished and total > finished
            else None}


def _where(slot: dict[str, Any] | None, labels: dict[str, str]) -> dict[str, Any] | None:
    """What a worker is running, in the words of the table: phase, arm, study, slot index and Optuna trial."""
    if slot is None:
        return None
    return {"role": slot["role"], "arm": labels.get(slot["arm"], slot["arm"]), "study": slot["study"],
            "idx": slot["idx"], "trial": slot["trial_number"]}


def describe(current: dict[str, Any] | None) -> str:
    if current is None:
        return "idle"
    trial = f"trial {current['trial']}" if current["trial"] is not None else f"run {current['idx']}"
    return f"{current['role']} {current['arm']} study {current['study']} {trial}"


def is_complete(spec: Spec, slots: list[dict[str, Any]]) -> bool:
    """Nothing left to run: every slot done, and the follow-up phases (added once tuning is done) are present."""
    if not slots or any(s["state"] != DONE for s in slots):
        return False
    if spec.evaluation.seeds >= 1:
        evaluated = {(s["arm"], s["study"]) for s in slots if s["role"] == "eval"}
        if len(evaluated) < len(spec.arms) * spec.budget.studies:
            return False
        if spec.transfer_arm is not None and not any(s["role"] == "transfer" for s in slots):
            return False
    return True


def progress_line(st: dict[str, Any]) -> str:
    """One line of progress for a log or a pipe (where a live table cannot redraw)."""
    line = f"{st['experiment']}: {st['finished']}/{st['total']} slots done, parity {st['parity']}"
    if "elapsed" in st:
        line += f", elapsed {fmt_seconds(st['elapsed'])}, ETA {fmt_seconds(st.get('eta'))}"
    return line


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


# (header, key): abbreviated deliberately so that the table fits 80 columns; the caption spells them out.
COLUMNS = (("phase", "phase"), ("arm", "arm"), ("study", "study"), ("done", "done"), ("compl", "complete"),
           ("pruned", "pruned"), ("div", "diverged"), ("run", "running"), ("lost", "lost"), ("best", "best"))
LEGEND = "done = finished/budget, compl = complete, div = diverged, run = running, best = best val loss"


def table(st: dict[str, Any]) -> Table:
    """A terminal table of a status summary (used live by `bench run` and once by `bench status`), at most 80
    columns wide for a short arm label: borderless, abbreviated headers that never shrink (min_width), and the
    arm label the one column that may wrap. Every cell is plain Text: a stored string is never rich markup."""
    title = f"{st['experiment']}  {st['finished']}/{st['total']} slots  parity {st['parity']}"
    if "elapsed" in st:
        title += f"  elapsed {fmt_seconds(st['elapsed'])}  ETA {fmt_seconds(st.get('eta'))}"
    legend = LEGEND if st.get("direction", "minimize") == "minimize" else LEGEND.replace("loss", "score (highest)")
    t = Table(title=Text(title), caption=Text(legend), box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), show_edge=False,
              caption_justify="left")
    for header, _ in COLUMNS:
        left = header in ("phase", "arm")
        t.add_column(Text(header), justify="left" if left else "right", min_width=len(header),
                     no_wrap=header != "arm", overflow="fold")
    for role, rows in st["phases"].items():
        for r in rows:
            best = "-" if r["best"] is None else f"{r['best']:.4f}"
            cells = [role, r["arm"], str(r["study"]), f"{r['done']}/{r['budget']}",
                     *(str(r["by_outcome"][o]) for o in ("complete", "pruned", "diverged")), str(len(r["running"])),
                     str(r["lost"]), best]
            t.add_row(*(Text(c) for c in cells))
    return t
