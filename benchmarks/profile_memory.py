"""Where an audit's memory goes: dnncheck.audit over the generated 224-px Dataset of
bench_dataset_stream.py with torchvision resnet18, printing per check its time, the peak of the
process tree's memory while it ran (PSS, bench_scale.tree_memory) and the resident level after it,
and at the end the main thread's stack at each check's peak, highest first.

Run: python benchmarks/profile_memory.py [N] [checks]   (N images, default 1000; checks: --select)
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_dataset_stream import splits  # noqa: E402
from bench_scale import tree_memory  # noqa: E402


SHOW_STACKS = {"loading data", "normalization", "label-noise", "loss-sanity", "separability", "split-leakage",
               "overfit", "pixel-attack", "gradient-health", "learning-rate", "external-validation"}


def main() -> None:
    import dnncheck
    import dnncheck.runner as runner

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    select = sys.argv[2] if len(sys.argv) > 2 else None
    phase, peaks, stacks = ["loading data"], {}, {}
    main_thread = threading.main_thread().ident

    def sample() -> None:
        while True:
            now = tree_memory(os.getpid())
            peaks[phase[0]] = max(peaks.get(phase[0], 0), now)
            if now >= peaks[phase[0]] and phase[0] in SHOW_STACKS:
                stacks[phase[0]] = traceback.format_stack(sys._current_frames()[main_thread])
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    run_check = runner.run_check

    def timed(check, ctx):
        phase[0] = check.slug
        start = time.perf_counter()
        result = run_check(check, ctx)
        after = tree_memory(os.getpid())
        print(f"{check.slug:<20} {time.perf_counter() - start:6.0f} s  peak {peaks.get(check.slug, 0) / 2**30:5.2f} GiB"
              f"  after {after / 2**30:5.2f} GiB", flush=True)
        return result

    runner.run_check = timed
    dnncheck.audit(splits(n), model="resnet18", image_size=(224, 224), select=select)
    print(f"loading data peak {peaks.get('loading data', 0) / 2**30:.2f} GiB")
    for name, stack in sorted(stacks.items(), key=lambda item: -peaks[item[0]]):
        print(f"-- {name} peaked at {peaks[name] / 2**30:.2f} GiB in:")
        print("".join(line for line in stack if "dnncheck" in line and "benchmarks" not in line)[-1500:])


if __name__ == "__main__":
    main()
