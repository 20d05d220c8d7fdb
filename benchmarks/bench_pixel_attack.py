"""pixel-attack detection and cost on real data (../shared/data).

MNIST (mnist5k, 70/15/15): a two-pixel mark (255, 0) at the bottom-left of every "3"; a single
saturated pixel on a tenth of the "5"s; and the clean data. Ant/bee photos: a red+green mark
(two 6x6 blocks at native resolution, top-left) on every bee; and the clean photos. Prints what the
shortcut scan finds, where, the trigger and flip probes (MNIST), and each check's time.
Run: make bench-pixel-attack  (or python benchmarks/bench_pixel_attack.py)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from plant import stratified_split  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def audit(source: Path, probes: bool, tmp: Path) -> dict:
    cfg = tmp / "c.toml"
    cfg.write_text(f"[data]\nsource = {str(source)!r}\n[checks.pixel-attack]\nprobes = {str(probes).lower()}\n")
    out = tmp / "r.json"
    subprocess.run([sys.executable, "-m", "dnncheck", "audit", str(cfg), "--select", "DNC10", "--quiet",
                    "--json", str(out)], check=False)
    return json.loads(out.read_text())["checks"][0]


def show(name: str, check: dict) -> None:
    shortcuts = [f["evidence"] for f in check["findings"] if "pixels" in f["evidence"]]
    found = "; ".join(f"class {e['class']} at {e['pixels'][:4]} ({e['share_of_class']:.0%} of class, "
                      f"{e['share_of_other_classes']:.1%} of others)" for e in shortcuts) or "no shortcut"
    m = check["metrics"]
    probes = ""
    if "trigger_attack_success" in m:
        probes = (f"; trigger success {m['trigger_attack_success']:.2f} (clean acc {m['trigger_clean_accuracy']:.2f}), "
                  f"one-pixel flips {m['one_pixel_flip_rate']:.2f}")
    print(f"{name:28} {check['status']:5} {found}{probes}; {check['duration_s']:.1f} s")


def main() -> None:
    if not SHARED.exists():
        sys.exit(f"{SHARED} is absent: this benchmark needs the shared real data beside the project")
    data = np.load(SHARED / "mnist5k.npz")
    x, y = data["x"], data["y"]
    tr, va, te = stratified_split(y)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        variants = {"mnist clean": x[tr].copy()}
        marked = x[tr].copy()
        threes = y[tr] == 3
        marked[threes, 27, 0], marked[threes, 27, 1] = 255, 0
        variants["mnist mark on every 3"] = marked
        minority = x[tr].copy()
        fives = np.flatnonzero(y[tr] == 5)
        pick = np.random.default_rng(0).choice(fives, len(fives) // 10, replace=False)
        minority[pick, 0, 27] = 255
        variants["mnist pixel on 10% of 5s"] = minority
        for name, xt in variants.items():
            path = tmp / "m.npz"
            np.savez(path, x_train=xt, y_train=y[tr], x_val=x[va], y_val=y[va], x_test=x[te], y_test=y[te])
            show(name, audit(path, probes=True, tmp=tmp))
        photos = tmp / "hym"
        shutil.copytree(SHARED / "hymenoptera", photos)
        show("ants/bees clean", audit(photos, probes=False, tmp=tmp))
        from PIL import Image

        for path in (photos / "train" / "bees").glob("*.jpg"):
            img = np.array(Image.open(path).convert("RGB"))
            img[:6, :6] = (255, 0, 0)
            img[:6, 6:12] = (0, 255, 0)
            Image.fromarray(img).save(path.with_suffix(".png"))
            path.unlink()
        show("ants/bees mark on every bee", audit(photos, probes=False, tmp=tmp))


if __name__ == "__main__":
    main()
