"""Full default audits of the client corpus (tests/clients): models as practitioners write them, each
on data it suits, with the default settings on this machine. Prints per model: wall time, peak
resident memory of the whole process tree (sampled from /proc every 0.2 s), the verdict, and every
warn/fail/error with its summary, to be read: a warning on a correct model must be a true finding.

Run: make bench-clients  (or python benchmarks/bench_clients.py [--only NAME,NAME] [--work DIR])
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
from bench_scale import measure  # noqa: E402
from tests.clients.corpus import CLIENTS, config_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated factory names (e.g. mnist_net,tv_resnet18)")
    parser.add_argument("--work", default="", help="folder for generated data, configs and results")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="dnncheck-clients-"))
    work.mkdir(parents=True, exist_ok=True)
    wanted = {w for w in args.only.split(",") if w}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    print(f"| model | data | time | peak memory | verdict | warnings and failures |")
    print("| --- | --- | --- | --- | --- | --- |")
    for client in CLIENTS:
        short = client.factory.rsplit(":", 1)[1]
        if wanted and short not in wanted:
            continue
        config = config_for(client, work)
        out = work / f"{short}.json"
        code, wall, peak = measure([sys.executable, "-m", "dnncheck", "audit", str(config), "--json", str(out),
                                    "--quiet"], work / "cache")
        result = json.loads(out.read_text())
        said = []
        not_run = (result["model"].get("probe_plan", {}).get("compute") or {}).get("not_run") or []
        if not_run:
            said.append(f"probes not run (over --budget on this CPU): {', '.join(not_run)}")
        for check in result["checks"]:
            if check["status"] in ("warn", "fail", "error"):
                said.append(f"{check['id']} {check['status']}: {check['summary']}")
        data = f"{client.data} at {client.image_size[0]}x{client.image_size[1]}"
        print(f"| {client.name} | {data} | {wall:.0f} s | {peak / 2**30:.2f} GiB | {result['status'].upper()} "
              f"(exit {code}) | {'<br>'.join(said) or 'none'} |", flush=True)


if __name__ == "__main__":
    main()
