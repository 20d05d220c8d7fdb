"""Matplotlib figures (Agg backend) for the HTML report, returned as PNG data URIs.

Each function draws one kind of figure from the plain data a check put in `CheckResult.figures`;
`figures_for` maps a check's figure data to a list of (title, data URI)."""

from __future__ import annotations

import base64
import io

import numpy as np

MAX_LINES = 10
DPI = 80


def _plt():
    import logging

    import matplotlib

    # matplotlib logs its notices (e.g. "Clipping input data") straight to stderr, which is kept for
    # errors: only its errors may pass
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _to_uri(fig) -> str:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def image_uri(image: np.ndarray, max_side: int = 64) -> str:
    """A small PNG thumbnail of an HWC image."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        arr = np.clip((np.nan_to_num(arr) - lo) / max(hi - lo, 1e-8) * 255, 0, 255).astype(np.uint8)
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr[..., :3])
    scale = max_side / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                     Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def image_grid(images, captions, cols: int = 8, title: str = "") -> str:
    plt = _plt()
    n = len(images)
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < n:
            im = np.asarray(images[k])
            ax.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray" if im.shape[-1] == 1 else None)
            ax.set_title(str(captions[k])[:28], fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    return _to_uri(fig)


def line_plot(series: dict, xlabel: str, ylabel: str, logx: bool = False, logy: bool = False, x=None) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, values in list(series.items())[:MAX_LINES]:
        ys = np.array([np.nan if v is None else v for v in values], dtype=float)
        xs = np.arange(1, len(ys) + 1) if x is None else np.asarray(x)[: len(ys)]
        ax.plot(xs, ys, label=str(name)[:40], linewidth=1.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _to_uri(fig)


def scatter(coords, labels, title: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4))
    labels = np.asarray(labels)
    for k, name in enumerate(sorted(set(labels.tolist()))[:20]):
        pts = coords[labels == name]
        ax.scatter(pts[:, 0], pts[:, 1], s=5, label=str(name)[:12], color=plt.cm.tab20(k % 20))
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=6, markerscale=2, loc="best", ncol=2)
    return _to_uri(fig)


def grouped_bars(categories, groups: dict, ylabel: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(categories) * max(1, len(groups))), 3))
    width = 0.8 / max(1, len(groups))
    xs = np.arange(len(categories))
    for k, (name, values) in enumerate(groups.items()):
        ax.bar(xs + k * width, values, width, label=name)
    ax.set_xticks(xs + width * (len(groups) - 1) / 2)
    ax.set_xticklabels([str(c)[:12] for c in categories], rotation=45 if len(categories) > 8 else 0, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    return _to_uri(fig)


def figures_for(figures: dict) -> list[tuple[str, str]]:
    """(title, PNG data URI) for every figure a check produced that has a drawing here."""
    out = []
    for key, data in figures.items():
        try:
            out += _draw(key, data)
        except Exception as exc:  # a figure that cannot be drawn must not sink the report
            out.append((f"{key}: not drawn ({type(exc).__name__}: {exc})", ""))
    return out


def _draw(key: str, data) -> list[tuple[str, str]]:
    if key == "montage" and len(data["images"]):
        return [(f"What the model sees - {data['note']}", image_grid(list(data["images"]),
                 [f"{lab}" for lab in data["labels"]], cols=8))]
    if key == "suspects" and data and "image" in data[0]:
        return [("Top label-noise suspects (given -> suggested)",
                 image_grid([d["image"] for d in data], [f"{d['given']}->{d['suggested']}" for d in data]))]
    if key == "duplicate_pairs" and data and "image_a" in data[0]:
        images, captions = [], []
        for d in data:
            images += [d["image_a"], d["image_b"]]
            captions += [d["a"], f"{d['b']} ({d['kind']} {d['similarity']:.3f})"]
        return [("Duplicate pairs across splits, side by side", image_grid(images, captions, cols=6))]
    if key == "projections":
        return [(f"{name.upper()} of penultimate features", scatter(np.asarray(p["coords"]), p["labels"], name.upper()))
                for name, p in data.items()]
    if key == "loss_curves":
        return [("Training loss per step: inputs as fed vs normalised the other way", line_plot(data, "step", "loss", logy=True))]
    if key == "class_counts":
        groups = {k: v for k, v in data.items() if k != "classes"}
        return [("Class counts per split", grouped_bars(data["classes"], groups, "samples"))]
    if key == "per_class_recall":
        return [("Per-class recall of the probe", grouped_bars(list(data), {"recall": list(data.values())}, "recall"))]
    if key == "curves":
        series = {k: v for k, v in data.items() if k != "step_loss" and any(x is not None for x in v)}
        return [("Probe curves per epoch", line_plot(series, "epoch", "value"))] if series else []
    if key == "history":
        return [("Training history", line_plot(data, "epoch", "value"))]
    if key == "range_test":
        return [("Learning-rate range test", line_plot({"loss (smoothed)": data["smoothed"], "loss": data["loss"]},
                                                       "learning rate", "loss", logx=True, x=data["lr"]))]
    if key == "grad_norms":
        weights = {k: v for k, v in data.items() if not k.endswith("bias")}
        return [("Gradient norm per layer during the probe", line_plot(weights, "record", "norm", logy=True))] if weights else []
    if key == "internal_vs_external":
        classes = sorted(set(data["internal"]["recall"]) | set(data["external"]["recall"]))
        return [("Per-class recall: internal test vs external", grouped_bars(
            classes, {"internal": [data["internal"]["recall"].get(c, 0) for c in classes],
                      "external": [data["external"]["recall"].get(c, 0) for c in classes]}, "recall"))]
    if key == "shortcut_means":
        out = []
        for item in data:
            plt = _plt()
            fig, ax = plt.subplots(figsize=(3, 3))
            mean = np.asarray(item["mean_image"])
            ax.imshow(mean[..., 0] if mean.shape[-1] == 1 else np.clip(mean / max(mean.max(), 1e-8), 0, 1),
                      cmap="gray" if mean.shape[-1] == 1 else None)
            rows, cols = zip(*item["pixels"])
            ax.scatter(cols, rows, s=60, facecolors="none", edgecolors="red", linewidths=1.5)
            ax.set_title(f"class {item['class']}: mean image, shortcut pixels circled", fontsize=8)
            ax.axis("off")
            out.append((f"Pixel shortcut for class {item['class']}", _to_uri(fig)))
        return out
    if key == "flip_examples" and data:
        images, captions = [], []
        for e in data:
            images += [e["clean_image"], e["attacked_image"]]
            top = ", ".join(f"{c} {p:.2f}" for c, p in e["attacked_top3"])
            captions += [f"{e['id']} ({e['clean']})", f"pixel {e['pixel']}: {top}"]
        return [("One-pixel flips: clean vs attacked, top-3 after the attack", image_grid(images, captions, cols=4))]
    if key == "target_histogram":
        return [("Training target histogram", grouped_bars([f"{e:.3g}" for e in data["edges"][:-1]],
                                                          {"train": data["counts"]}, "samples"))]
    return []
