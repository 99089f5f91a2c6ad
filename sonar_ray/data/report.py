"""The bad-input report a run writes next to its outputs: every skipped file with its reason."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd

from sonar_ray import storage

REPORT_NAME = "bad_inputs.json"


def bad_input_report(bad: pd.DataFrame) -> dict:
    """{"total", "counts": {reason: n}, "files": [{"path", "reason"}]} from rows with `uri` and `reason`."""
    files = [{"path": str(u), "reason": str(r)} for u, r in zip(bad["uri"], bad["reason"])]
    return {"total": len(files), "counts": dict(sorted(Counter(f["reason"] for f in files).items())), "files": files}


def write_bad_input_report(output_uri: str, bad: pd.DataFrame) -> dict:
    """Write `<output_uri>/bad_inputs.json` (`bad_input_report`); returns the report."""
    report = bad_input_report(bad)
    storage.write_bytes_atomic(storage.join(output_uri, REPORT_NAME), json.dumps(report, indent=2).encode())
    return report
