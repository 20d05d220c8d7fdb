"""Learned embeddings for the near-duplicate search (`[checks.split-leakage] embedding`).

Off by default (the default search is offline and weight-free). Two sources:
- "model": the penultimate features (the input of the output layer) of the user's model, with
  --weights when given: the model's own idea of which images are alike;
- "torchvision:<name>": a torchvision classification backbone with its default pretrained weights,
  used only when they are already in the torch cache (nothing is downloaded: a clear error says how
  to get them), on the images resized to 224 px and normalised as those weights expect.
Every sample of every split is embedded, a chunk at a time, and L2-normalised; pairs whose cosine
reaches `embedding_cosine` are candidates like the others (split-leakage, similarity.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnncheck.errors import UserError

BACKBONE_SIDE = 224
TORCHVISION = "torchvision:"


def check_setting(value: str, slug: str) -> None:
    """Raise a UserError (exit 2, before any check runs) for a setting that cannot work here."""
    if value in ("", "model"):
        return
    if not value.startswith(TORCHVISION):
        raise UserError(f"[checks.{slug}] embedding = {value!r}: use \"model\" or \"torchvision:<name>\" "
                        "(e.g. \"torchvision:resnet18\"), or leave it out for the default search")
    cached_weights(value[len(TORCHVISION):], slug)


def cached_weights(name: str, slug: str):
    """The default weights enum of a torchvision classification model, if their file is cached."""
    import torch
    import torchvision

    models = torchvision.models.list_models(module=torchvision.models)
    if name not in models:
        from dnncheck.errors import closest

        raise UserError(f"[checks.{slug}] embedding = \"{TORCHVISION}{name}\": torchvision has no such "
                        f"classification model{closest(name, models)}")
    weights = torchvision.models.get_model_weights(name).DEFAULT
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not path.is_file():
        raise UserError(f"[checks.{slug}] embedding = \"{TORCHVISION}{name}\": its pretrained weights are not in "
                        f"the torch cache ({path}); dnncheck never downloads them - fetch them once with "
                        f"python -c \"import torchvision; torchvision.models.get_model('{name}', weights='DEFAULT')\"")
    return weights


def embed_all(ctx, setting: str, names: list[str], slug: str) -> np.ndarray:
    """N x D float32 unit rows, the samples of `names` (splits) in order."""
    import torch

    from dnncheck.models.introspect import capture_penultimate
    from dnncheck.probes.train import forward_all

    if setting == "model":
        model, prepare, raw = ctx.user_model(), None, False
    else:
        model, prepare = _backbone(setting[len(TORCHVISION):], slug, ctx)
        raw = True
    rows = []
    for name in names:
        for x in ctx.split_inputs(name, raw=raw):
            x = prepare(x) if prepare else x
            with capture_penultimate(model) as captured:
                forward_all(model, x, ctx.device)
            if not captured:
                raise UserError(f"[checks.{slug}] embedding = {setting!r}: the model has no linear output layer "
                                "to read penultimate features from")
            rows.append(torch.cat(captured).reshape(len(x), -1).numpy())
    emb = np.concatenate(rows).astype(np.float32)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def _backbone(name: str, slug: str, ctx):
    import torch
    import torch.nn.functional as F
    import torchvision

    from dnncheck.data.dataset import integer_scale

    weights = cached_weights(name, slug)
    model = torchvision.models.get_model(name, weights=weights)
    scale = integer_scale(ctx.dataset.splits["train"].x) or 1.0
    mean = torch.tensor(weights.transforms().mean).view(1, 3, 1, 1)
    std = torch.tensor(weights.transforms().std).view(1, 3, 1, 1)

    def prepare(x):
        x = x.float() / scale
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = F.interpolate(x[:, :3], size=(BACKBONE_SIDE, BACKBONE_SIDE), mode="bilinear", antialias=True,
                          align_corners=False)
        return (x - mean) / std

    return model, prepare
