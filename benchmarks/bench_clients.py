"""Full default audits of the client corpus (tests/clients): models as practitioners write them, each
on data it suits, with the default settings on this machine. Prints per model: wall time, peak
resident memory of the whole process tree (sampled from /proc every 0.2 s), the verdict, and every
warn/fail/error with its summary, to be read: a warning on a correct model must be a true finding.

Run: make bench-clients  (or python benchmarks/bench_clients.py [--only NAME,NAME] [--work DIR])
     python benchmarks/bench_clients.py --speeds [--device cuda]   (training-step times vs probes/cost.py's prediction)
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
    parser.add_argument("--speeds", action="store_true", help="time training steps of the corpus' models instead")
    parser.add_argument("--device", default="cpu", help="with --speeds: cpu or cuda")
    args = parser.parse_args()
    if args.speeds:
        return speeds(args.device)
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


SPEED_MODELS = (("tv_resnet18", (3, 224, 224), 2), ("tv_resnet18", (3, 64, 64), 2), ("cifar_resnet18", (3, 32, 32), 10),
                ("tv_mobilenet_v3_small", (3, 224, 224), 2), ("tv_efficientnet_b0", (3, 224, 224), 2),
                ("mnist_net", (1, 28, 28), 10))


def speeds(device: str = "cpu") -> None:
    """Median Adam training-step time per sample (after warm-up steps) of the models the constants of
    probes/cost.py were fitted on, beside the plan's prediction. On the CPU (batches of 16 and 64) the
    quiet-machine fit is printed too (SPEEDS x SHARED_RUNNER_SLOWDOWN undone); on CUDA (batches of 8,
    64 and 256) steps run as the probes run them: bf16 autocast, channels_last, synchronised timing."""
    import statistics
    import time

    import torch

    from dnncheck.probes.cost import SHARED_RUNNER_SLOWDOWN, ModelCost, measure_cost, speed_of
    from dnncheck.probes.train import autocast
    from tests.clients import models

    cuda = device.startswith("cuda")
    build = {"cifar_resnet18": lambda c: models.cifar_resnet18(c, 3), "mnist_net": lambda c: models.mnist_net()}
    plan = speed_of("cuda" if cuda else "cpu")
    undo = 1.0 if cuda else SHARED_RUNNER_SLOWDOWN
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    print(f"device {torch.cuda.get_device_name() if cuda else 'cpu'}")
    print("| model | input | batch | GFLOP | activations | measured ms/sample | fit ms/sample | plan ms/sample |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, shape, classes in SPEED_MODELS:
        torch.manual_seed(0)
        model = build.get(name, lambda c, n=name: getattr(models, n)(c))(classes)
        cost: ModelCost = measure_cost(model, torch.randn(1, *shape))
        model.to(device).train()
        if cuda:
            model.to(memory_format=torch.channels_last)
        optimizer, loss = torch.optim.Adam(model.parameters(), 1e-3), torch.nn.CrossEntropyLoss()
        for batch in ((8, 64, 256) if cuda else (16, 64)):
            x = torch.randn(batch, *shape, device=device)
            x = x.contiguous(memory_format=torch.channels_last) if cuda else x
            y = torch.randint(0, classes, (batch,), device=device)
            times = []
            for _ in range(12 if cuda else 4):
                sync()
                start = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                with autocast(device):
                    out = model(x)
                    value = loss((out[0] if isinstance(out, tuple) else out).float(), y)
                value.backward()
                optimizer.step()
                sync()
                times.append(time.perf_counter() - start)
            measured = statistics.median(times[3 if cuda else 1:]) / batch
            predicted = cost.train_seconds(plan, 1, batch) / batch
            print(f"| {name} | {shape[1]} px | {batch} | {cost.flops / 1e9:.3f} | {cost.activations / 1e6:.2f} M | "
                  f"{measured * 1e3:.3f} | {predicted / undo * 1e3:.3f} | {predicted * 1e3:.3f} |", flush=True)


if __name__ == "__main__":
    main()
