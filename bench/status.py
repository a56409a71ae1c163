"""Progress of an experiment from the ledger alone: per role and depth, done by outcome, running, lost, best so far."""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table

from bench.ledger import CLAIMED, DONE, OUTCOMES, ROLES, Ledger
from bench.spec import Spec

LIVE_SECONDS = 60.0  # a worker whose heartbeat is older than this is not shown as live


def status(spec: Spec, ledger: Ledger, started: float | None = None) -> dict[str, Any]:
    """A JSON-ready summary (the `bench status --json` schema, documented in the README)."""
    slots = ledger.slots()
    workers = {w["id"]: w for w in ledger.workers()}
    now = time.time()
    phases: dict[str, list[dict[str, Any]]] = {}
    for role in ROLES:
        mine = [s for s in slots if s["role"] == role]
        if not mine:
            continue
        rows = []
        for depth in spec.depths:
            ds = [s for s in mine if s["depth"] == depth]
            done = [s for s in ds if s["state"] == DONE]
            values = [s["value"] for s in done if s["value"] is not None and s["outcome"] != "pruned"]
            running = [{"worker": s["worker_id"], "host": workers.get(s["worker_id"], {}).get("host"),
                        "since": s["claimed_at"]} for s in ds if s["state"] == CLAIMED]
            rows.append({
                "depth": depth, "budget": len(ds), "done": len(done),
                "by_outcome": {o: sum(1 for s in done if s["outcome"] == o) for o in OUTCOMES},
                "running": running, "lost": sum(s["lost"] for s in ds),
                "best": min(values) if values else None,
                "seconds": sum(s["seconds"] or 0.0 for s in done),
            })
        phases[role] = rows
    tune = phases.get("tune", [])
    done_counts = [r["done"] for r in tune]
    total = sum(r["budget"] for rows in phases.values() for r in rows)
    finished = sum(r["done"] for rows in phases.values() for r in rows)
    out: dict[str, Any] = {
        "experiment": spec.name, "spec_hash": spec.hash, "phases": phases,
        "parity": (max(done_counts) - min(done_counts)) if done_counts else 0,
        "total": total, "finished": finished,
        "workers": [{"id": w["id"], "host": w["host"], "pid": w["pid"], "device": w["device"],
                     "current_slot": w["current_slot"], "trials_done": w["trials_done"]}
                    for w in workers.values() if w["stopped_at"] is None and now - w["heartbeat_at"] < LIVE_SECONDS],
    }
    if started is not None:
        elapsed = now - started
        out["elapsed"] = elapsed
        out["eta"] = elapsed / finished * (total - finished) if finished and total > finished else None
    return out


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def table(st: dict[str, Any]) -> Table:
    """A terminal table of a status summary (used live by `bench run` and once by `bench status`)."""
    title = f"{st['experiment']}  {st['finished']}/{st['total']} slots  parity {st['parity']}"
    if "elapsed" in st:
        title += f"  elapsed {_fmt_seconds(st['elapsed'])}  ETA {_fmt_seconds(st.get('eta'))}"
    t = Table(title=title)
    for col in ("phase", "depth", "done/budget", "complete", "pruned", "diverged", "running", "lost", "best val loss"):
        t.add_column(col, justify="left" if col == "phase" else "right")
    for role, rows in st["phases"].items():
        for r in rows:
            best = "-" if r["best"] is None else f"{r['best']:.4f}"
            t.add_row(role, str(r["depth"]), f"{r['done']}/{r['budget']}", *(str(r["by_outcome"][o]) for o in
                      ("complete", "pruned", "diverged")), str(len(r["running"])), str(r["lost"]), best)
    return t
