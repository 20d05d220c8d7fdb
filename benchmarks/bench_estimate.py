"""The plan's time estimate against the measured probe time (issue "The user's training setup":
within 2x) on the digits demo, 5,000 real MNIST digits and the real ant/bee photos, default settings.
Prints per audit the estimated and measured seconds of the probes that ran to the end and their ratio
(`model.probe_plan.spent_over_estimated_seconds` of the JSON). Run on a quiet machine: the estimate
is calibrated on a few steps, and a load that changes during the audit moves the ratio.

Run: python benchmarks/bench_estimate.py   (make bench-estimate)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _audit(source: str, out: Path) -> dict:
    subprocess.run([sys.executable, "-m", "dnncheck", "audit", source, "--quiet", "--json", str(out)],
                   check=False, capture_output=True)
    return json.loads(out.read_text())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"digits demo": "sklearn:digits"}
        if (DATA / "mnist5k.npz").is_file():
            d = np.load(DATA / "mnist5k.npz")
            np.savez(Path(tmp) / "mnist5k.npz", x_train=d["x"], y_train=d["y"])
            sources["5k MNIST"] = str(Path(tmp) / "mnist5k.npz")
        if (DATA / "hymenoptera").is_dir():
            sources["ant/bee photos"] = str(DATA / "hymenoptera")
        for name, source in sources.items():
            plan = _audit(source, Path(tmp) / "r.json")["model"]["probe_plan"]
            ran = [p for p in plan["probes"] if p["spent_over_estimated_seconds"] and not p["cut_short"]]
            spent = sum(p["spent_seconds"] for p in ran)
            print(f"{name:<16} estimated {plan['estimated_seconds']:7.1f} s for the plan; probes that ran: "
                  f"measured {spent:6.1f} s, measured/estimated {plan['spent_over_estimated_seconds']}", flush=True)


if __name__ == "__main__":
    main()
