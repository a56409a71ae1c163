"""The record audit: every counted trial against the ledger's stored result, unaccounted trials, the digest chain."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from bench.store.record import chain_step, genesis, record_digest

INTACT, BROKEN, UNVERIFIABLE = "intact", "broken", "not verifiable"
FIELDS = ("number", "state", "value", "params", "distributions", "intermediate", "spec_hash", "attrs")
FINISHED = ("COMPLETE", "PRUNED")
MAX_LISTED = 20  # problems listed in full in report.json; the count is always exact


@dataclass
class StudyTrials:
    """One stored study's trials as the audit needs them: trial number -> studies.trial_record (JSON-plain)."""

    name: str
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    present: bool = True  # False: the spec implies this study and the storage lacks it


def _same(a: Any, b: Any) -> bool:
    """Equal as stored values: numbers to 12 significant digits (a database's double may round the last bit)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return bool(a == b)


def _short(v: Any) -> str:
    text = json.dumps(v, sort_keys=True) if not isinstance(v, str) else v
    return text if len(text) <= 80 else text[:77] + "..."


def _study_key(slot: dict[str, Any]) -> tuple[str, str, int]:
    return slot["role"], slot["arm"], slot["study"] if slot["role"] == "tune" else 0


def audit(slots: list[dict[str, Any]], studies: dict[tuple[str, str, int], StudyTrials],
          experiment: str, spec_hash: str | None, recorded: bool) -> dict[str, Any]:
    """Cross-check the ledger against the stored studies.

    slots: the ledger's rows (ledger.Ledger.slots); studies: (role, arm key, replicate) -> the stored study (or
    its name, not present); recorded: whether the ledger has the record columns.
    Returns {"status", "text", "head", "recorded_slots", "unrecorded_slots", "mismatches", "unaccounted",
    "chain_problems"}; each mismatch names study, trial and field.
    """
    mismatches: list[dict[str, Any]] = []
    unrecorded = 0
    done = [s for s in slots if s["state"] == "done"]
    claimed = {(_study_key(s), s["trial_number"]) for s in slots if s["state"] == "claimed"}
    claimed_ids = {s["id"] for s in slots if s["state"] == "claimed"}
    counted: set[tuple[tuple[str, str, int], int]] = set()
    for s in done:
        key, number = _study_key(s), s["trial_number"]
        counted.add((key, number))
        st = studies.get(key)
        where = {"study": st.name if st else f"{key[0]} study of arm {key[1]}", "trial": number, "slot": s["id"]}
        if st is None or not st.present:
            mismatches.append({**where, "field": "study", "detail": "the study this slot's trial belongs to is "
                               "missing from the storage"})
            continue
        stored = st.records.get(number)
        if stored is None:
            mismatches.append({**where, "field": "trial", "detail": "the trial this slot counts is missing"})
            continue
        if s.get("result"):
            want = json.loads(s["result"])
            for f in FIELDS:
                if not _same(want.get(f), stored.get(f)):
                    mismatches.append({**where, "field": f, "detail": f"{f} differs from the ledger's record: "
                                       f"ledger {_short(want.get(f))}, storage {_short(stored.get(f))}"})
        else:
            unrecorded += 1
            mismatches += _legacy_check(s, stored, where)
    unaccounted = []
    for key, st in studies.items():
        for number, rec in st.records.items():
            if rec["state"] not in FINISHED or (key, number) in counted or (key, number) in claimed:
                continue
            if (rec.get("attrs") or {}).get("bench_slot") in claimed_ids:
                continue  # a fixed-config run written a moment before its slot is marked done
            unaccounted.append({"study": st.name, "trial": number, "state": rec["state"].lower(),
                                "detail": f"{st.name} trial {number} ({rec['state'].lower()}) is counted by no "
                                          "ledger slot"})
    chain, head = _check_chain(done, experiment, spec_hash) if recorded else ([], None)
    problems = bool(mismatches or unaccounted or chain)
    status = BROKEN if problems else UNVERIFIABLE if (unrecorded or not recorded) else INTACT
    text = {INTACT: "the record is intact: every counted trial matches the result its ledger slot stored, the "
                    "digest chain verifies and no trial is unaccounted for",
            BROKEN: "the record does not match the storage: trials were edited, added or removed after they were "
                    "recorded (see the problems listed)",
            UNVERIFIABLE: f"the record is not verifiable: {unrecorded or len(done)} finished slots were recorded "
                          "by an older bench without a stored result (only outcome and value were checked)"}[status]
    return {"status": status, "text": text, "head": head, "recorded_slots": len(done) - unrecorded,
            "unrecorded_slots": unrecorded, "n_mismatches": len(mismatches), "mismatches": mismatches[:MAX_LISTED],
            "n_unaccounted": len(unaccounted), "unaccounted": unaccounted[:MAX_LISTED], "chain_problems": chain}


def _legacy_check(slot: dict[str, Any], stored: dict[str, Any], where: dict[str, Any]) -> list[dict[str, Any]]:
    """What a slot without a stored result still allows: its outcome and (finite) value."""
    out = []
    want_state = "PRUNED" if slot["outcome"] == "pruned" else "COMPLETE"
    if stored["state"] != want_state:
        out.append({**where, "field": "state", "detail": f"state differs from the ledger: ledger {slot['outcome']}, "
                    f"storage {stored['state'].lower()}"})
    v = stored.get("value")
    if slot["outcome"] == "complete" and slot["value"] is not None and not (
            isinstance(v, float | int) and _same(float(v), float(slot["value"]))):
        out.append({**where, "field": "value", "detail": f"value differs from the ledger: ledger {slot['value']}, "
                    f"storage {_short(v)}"})
    return out


def _check_chain(done: list[dict[str, Any]], experiment: str, spec_hash: str | None
                 ) -> tuple[list[str], str | None]:
    """Recompute every recorded slot's digest and the chain in finish order; returns (problems, head)."""
    rec = sorted((s for s in done if s.get("seq") is not None), key=lambda s: s["seq"])
    problems = []
    previous = genesis(experiment, spec_hash or "")
    for pos, s in enumerate(rec, start=1):
        name = f"slot {s['role']}/{s['study']}/{s['idx']} (seq {s['seq']})"
        if s["seq"] != pos:
            problems.append(f"{name}: chain position {pos} expected (a recorded slot was removed or reset)")
        digest = record_digest(s["role"], s["arm"], s["study"], s["idx"], s["outcome"], s["result"] or "null")
        if digest != s["digest"]:
            problems.append(f"{name}: its digest does not match its stored result (the ledger row was edited)")
        if chain_step(previous, str(s["digest"])) != s["chain"]:
            problems.append(f"{name}: chain link does not follow from the previous slot")
        previous = str(s["chain"])
    if any(s.get("seq") is None and s.get("result") for s in done):
        problems.append("a slot has a stored result but no chain position")
    return problems, (previous if rec else None)
