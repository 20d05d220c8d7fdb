"""Models with the model and training faults of bench_faults.py, written as practitioners write them
(each is the small MNIST/digits CNN of `cnn` with one thing wrong). Factories take the keywords
dnncheck passes (num_classes, in_channels, image_size)."""

from __future__ import annotations

import torch
from torch import nn


def _features(in_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())


def cnn(num_classes, in_channels):
    """The correct model the faulty ones start from."""
    return nn.Sequential(_features(in_channels), nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, num_classes))


def softmax_before_cross_entropy(num_classes, in_channels):
    return nn.Sequential(cnn(num_classes, in_channels), nn.Softmax(dim=1))


def relu_on_the_output(num_classes, in_channels):
    return nn.Sequential(cnn(num_classes, in_channels), nn.ReLU())


def sigmoid_with_cross_entropy(num_classes, in_channels):
    return nn.Sequential(cnn(num_classes, in_channels), nn.Sigmoid())


def too_few_outputs(num_classes, in_channels):  # the class count hard-coded from another dataset
    return cnn(5, in_channels)


def everything_frozen(num_classes, in_channels):  # a backbone frozen "for fine-tuning", head included
    model = cnn(num_classes, in_channels)
    for p in model.parameters():
        p.requires_grad = False
    return model


class Detached(nn.Module):
    """forward returns a detached tensor (a .detach()/.numpy() round trip left in forward)."""

    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.net = cnn(num_classes, in_channels)

    def forward(self, x):
        return self.net(x).detach()


def detached_output(num_classes, in_channels):
    return Detached(num_classes, in_channels)


def dead_relus(num_classes, in_channels):  # a bias initialised far negative: no unit ever fires
    model = cnn(num_classes, in_channels)
    with torch.no_grad():
        model[1].bias.fill_(-50.0)
    return model


def exploding_init(num_classes, in_channels):  # weights drawn 30x too large
    model = cnn(num_classes, in_channels)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(30.0)
    return model


def deep_sigmoid_mlp(num_classes, in_channels, image_size):  # 12 saturating layers: vanishing gradients
    size = in_channels * image_size[0] * image_size[1]
    layers = [nn.Flatten(), nn.Linear(size, 64), nn.Sigmoid()]
    for _ in range(11):
        layers += [nn.Linear(64, 64), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(64, num_classes))


class BatchMixing(nn.Module):
    """Normalises each batch by its own statistics in forward (a hand-written 'standardise'): a
    sample's output depends on the rest of its batch, also at evaluation."""

    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.net = cnn(num_classes, in_channels)

    def forward(self, x):
        return self.net((x - x.mean(dim=0, keepdim=True)) / (x.std(dim=0, keepdim=True) + 1e-5))


def batch_mixing(num_classes, in_channels):
    return BatchMixing(num_classes, in_channels)
