"""The tamper-evident record of finished slots: canonical result JSON, per-slot digests and the chain over them.

A finished slot stores `result` (what its trial holds, studies.trial_record), `digest` = sha256 over the slot's
key, outcome and result, and `chain` = sha256(previous chain + digest) at position `seq` in finish order, starting
from `genesis` (bound to the experiment and spec). The report recomputes all of it (report/audit.py). Without a
secret this is tamper-evident, not tamper-proof: whoever writes both tables can recompute the chain, so the head
of a published report is the anchor.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from bench.spec import canonical_json


def _plain(v: Any) -> Any:
    """JSON-safe and canonical: non-finite floats as strings (canonical JSON refuses NaN and infinities)."""
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def result_json(result: dict[str, Any]) -> str:
    return canonical_json(_plain(result))


def genesis(experiment: str, spec_hash: str) -> str:
    """The chain's starting value: binds the record to one experiment and spec."""
    return hashlib.sha256(f"bench record\n{experiment}\n{spec_hash}".encode()).hexdigest()


def record_digest(role: str, arm: str, study: int, idx: int, outcome: str, result: str) -> str:
    """sha256 over a finished slot's own content: its key, outcome and stored result (canonical JSON)."""
    body = canonical_json({"slot": [role, arm, study, idx], "outcome": outcome, "result": json.loads(result)})
    return hashlib.sha256(body.encode()).hexdigest()


def chain_step(previous: str, digest: str) -> str:
    return hashlib.sha256(f"{previous}{digest}".encode()).hexdigest()
