"""split-leakage quality and scale on real MNIST digits (../shared/data/mnist5k.npz).

Quality: a stratified 70/15/15 split; 280 validation images are replaced by copies of training
images (40 each: exact, 1-pixel shift, Gaussian noise sigma 8, brightness +20, JPEG quality 75,
resampled down to 60-80% of the side and back up, contrast x0.6-0.8 or x1.2-1.5).
Recall and precision are measured over cross-split pairs; the same split without plants shows how
many pairs the check reports on clean data.
Scale: 70,000 28x28 images (mnist5k tiled 14 times, each copy jittered: shifted up to 3 pixels,
noise sigma 12, brightness -30..30), split 70/15/15; wall time and peak memory of split-leakage and
input-fidelity, each in its own process.
Photos: 3,000 siblings of the 398 real ant/bee photos (random crops to 60-100% of the side, mirror
images, brightness/contrast, rescaling, JPEG; plant.photo_siblings_folder) split 70/15/15 at random:
leaked evaluation photos named in the findings (their clusters reach train), the precision of the pairs
listed (the first 1,000) and how many listed clusters hold one original's photos; the original folder's pairs.
Photo scale: 20,000 such siblings, time and peak memory of split-leakage.
Run: make bench-leakage  (or python benchmarks/bench_leakage.py [--skip-scale])
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from plant import RESAMPLE_TRANSFORMS, TRANSFORMS, photo_siblings_folder, plant_copies, stratified_split  # noqa: E402

KINDS = TRANSFORMS + RESAMPLE_TRANSFORMS

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist5k.npz"
HYMENOPTERA = MNIST.parent / "hymenoptera"


def run_check(npz: Path, slug: str) -> dict:
    """Run one check on an npz in a fresh process; its result, wall time and peak RSS."""
    code = f"""
import json, resource, sys, time
start = time.perf_counter()
from dnncheck.config import AuditConfig
from dnncheck.context import Context
from dnncheck.runner import run_check
from dnncheck.checks import lookup
ctx = Context(AuditConfig(source={str(npz)!r}))
ctx.prepare()
loaded = time.perf_counter() - start
result = run_check(lookup({slug!r})(), ctx)
print(json.dumps({{"result": result.to_dict(), "load_s": loaded, "check_s": result.duration_s,
                  "wall_s": time.perf_counter() - start,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def quality(tmp: Path) -> None:
    data = np.load(MNIST)
    x, y = data["x"], data["y"]
    tr, va, te = stratified_split(y)
    clean = tmp / "clean.npz"
    np.savez(clean, x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va], x_test=x[te], y_test=y[te])
    x_val, planted = plant_copies(x[tr], x[va], per_kind=40, kinds=KINDS)
    y_val = y[va].copy()
    for s, t, _ in planted:
        y_val[t] = y[tr][s]  # a copy carries its source's label
    dirty = tmp / "planted.npz"
    np.savez(dirty, x_train=x[tr], y_train=y[tr], x_val=x_val, y_val=y_val, x_test=x[te], y_test=y[te])
    out = run_check(dirty, "split-leakage")
    found = {(p["a"], p["b"]) for f in out["result"]["findings"] for p in f["evidence"].get("pairs", [])}
    truth = {(f"train:{s}", f"val:{t}"): kind for s, t, kind in planted}
    hits = [k for k in truth if k in found]
    recall = len(hits) / len(truth)
    precision = len(hits) / len(found) if found else 0.0
    print(f"planted: {len(truth)} pairs (40 each of {', '.join(KINDS)})")
    print(f"  found {len(found)} cross-split pairs: recall {recall:.3f}, precision {precision:.3f}, "
          f"check {out['check_s']:.2f} s")
    for kind in KINDS:
        got = sum(1 for k, v in truth.items() if v == kind and k in found)
        print(f"    {kind:9} {got}/40")
    base = run_check(clean, "split-leakage")
    pairs = [p for f in base["result"]["findings"] for p in f["evidence"].get("pairs", [])]
    within = [p for f in base["result"]["findings"] for p in f["evidence"].get("within_split_pairs", [])]
    print(f"clean split: {len(pairs)} cross-split pair(s) reported {[(p['a'], p['b'], p['similarity']) for p in pairs[:5]]}, "
          f"{len(within)} within splits {[(p['a'], p['b'], p['similarity']) for p in within[:5]]}, "
          f"check {base['check_s']:.2f} s")


def _photo_pairs(result: dict) -> tuple[list, list]:
    findings = result["result"]["findings"]
    cross = [p for f in findings for p in f["evidence"].get("pairs", []) if "kind" in p]
    within = [p for f in findings for p in f["evidence"].get("within_split_pairs", [])]
    return cross, within


def photos(tmp: Path, total: int = 3000) -> None:
    """Sibling photos made from the 398 ant/bee photos (crops to 60-100% of the side, mirror images,
    brightness/contrast, rescaling, JPEG), split 70/15/15 at random: how many leaked evaluation photos
    are named with a training sibling, and how many reported pairs are right."""
    from collections import Counter

    made = photo_siblings_folder(HYMENOPTERA, tmp / "siblings", total)
    out = run_check(tmp / "siblings", "split-leakage")
    cross, within = _photo_pairs(out)
    origin = made.__getitem__
    in_train = Counter(origin(p) for p in made if p.startswith("train/"))
    leaked = {p for p in made if not p.startswith("train/") and in_train[origin(p)]}
    # named: in a cross-split finding's samples (every evaluation sample of a cluster that reaches an
    # earlier split: the pairs listed stop at 1,000); clusters listed are checked for one origin each
    findings = out["result"]["findings"]
    named = leaked & {s for f in findings if "clusters" in f["evidence"] and "pairs" in f["evidence"]
                      for s in f["samples"]}
    clusters = [c for f in findings for c in f["evidence"].get("clusters", [])]
    pure = sum(len({origin(m) for ids in c["members"].values() for m in ids}) == 1 for c in clusters)
    right = sum(origin(p["a"]) == origin(p["b"]) for p in cross)
    right_within = sum(origin(p["a"]) == origin(p["b"]) for p in within)
    kinds = Counter(p["kind"] for p in cross)
    print(f"photos: {total} siblings of {len(set(made.values()))} ant/bee photos, {len(leaked)} evaluation photos "
          f"with a training sibling")
    print(f"  named with a training sibling {len(named)}/{len(leaked)} ({len(named) / max(1, len(leaked)):.3f}); "
          f"cross-split pairs {len(cross)} {dict(kinds)}, precision {right / max(1, len(cross)):.3f}; within-split "
          f"pairs {len(within)}, precision {right_within / max(1, len(within)):.3f}; clusters listed {len(clusters)}, "
          f"of one origin {pure}; check {out['check_s']:.1f} s "
          f"(loading {out['load_s']:.1f} s)")
    original = run_check(HYMENOPTERA, "split-leakage")
    cross, within = _photo_pairs(original)
    print(f"  the original ant/bee folder: {len(cross)} cross-split and {len(within)} within-split pair(s) "
          f"{[(p['a'], p['b'], p['kind'], p['similarity']) for p in (cross + within)[:5]]}")


def photo_scale(tmp: Path, total: int = 20000) -> None:
    photo_siblings_folder(HYMENOPTERA, tmp / "scale", total, seed=1)
    out = run_check(tmp / "scale", "split-leakage")
    m = out["result"]["metrics"]
    print(f"photo scale: {total} photos: split-leakage check {out['check_s']:.1f} s, process wall {out['wall_s']:.1f} s "
          f"(loading {out['load_s']:.1f} s), peak memory {out['peak_mb']:.0f} MB; "
          f"{m.get('geometric_duplicate_pairs', 0)} geometric + {m.get('near_duplicate_pairs', 0)} near cross-split "
          f"pairs, {m.get('within_split_duplicate_pairs', 0)} within splits")


def scale(tmp: Path) -> None:
    data = np.load(MNIST)
    rng = np.random.default_rng(0)
    tiles = []
    for _ in range(14):
        shifted = np.stack([np.roll(im, tuple(rng.integers(-3, 4, 2)), axis=(0, 1)) for im in data["x"]])
        noisy = shifted + rng.normal(0, 12, shifted.shape) + rng.uniform(-30, 30, (len(shifted), 1, 1))
        tiles.append(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
    x = np.concatenate(tiles)
    y = np.tile(data["y"], 14)
    tr, va, te = stratified_split(y)
    path = tmp / "mnist70k.npz"
    np.savez(path, x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va], x_test=x[te], y_test=y[te])
    print(f"scale: {len(x)} images of 28x28 (train/val/test {len(tr)}/{len(va)}/{len(te)})")
    for slug in ("split-leakage", "input-fidelity"):
        out = run_check(path, slug)
        m = out["result"]["metrics"]
        extra = (f"{m.get('exact_duplicate_pairs', 0)} exact + {m.get('near_duplicate_pairs', 0)} near pairs"
                 if slug == "split-leakage" else out["result"]["summary"][:80])
        print(f"  {slug:15} check {out['check_s']:6.1f} s, process wall {out['wall_s']:6.1f} s "
              f"(loading {out['load_s']:.1f} s), peak memory {out['peak_mb']:.0f} MB; {extra}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    if not MNIST.exists():
        sys.exit(f"{MNIST} is absent: this benchmark needs the shared real data beside the project")
    with tempfile.TemporaryDirectory() as tmp:
        quality(Path(tmp))
        photos(Path(tmp))
        if not args.skip_scale:
            scale(Path(tmp))
            photo_scale(Path(tmp))


if __name__ == "__main__":
    main()
