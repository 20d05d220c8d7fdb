"""The client corpus: well-known model shapes as users write them, each with a factory dnncheck calls.

- `mnist_net`: pytorch/examples' MNIST example as its README describes it: two 3x3 convolutions (32,
  64), max-pool, dropout 0.25, a 9216x128 dense layer, dropout 0.5, 10 outputs through log_softmax,
  trained with NLLLoss. Fixed to 1x28x28 inputs.
- `cifar_lenet`: LeNet-5 as CIFAR-10 tutorials write it: conv 5x5 (6), pool, conv 5x5 (16), pool,
  dense 400-120-84-C on 3x32x32 inputs.
- `cifar_resnet18`: ResNet-18 for 32x32 inputs (He et al. 2016 with the CIFAR stem: one 3x3
  convolution, no max-pool), BasicBlocks [2, 2, 2, 2] at 64-512 channels, global average pool.
- `tv_resnet18`, `tv_mobilenet_v3_small`, `tv_efficientnet_b0`: torchvision's models built with
  `num_classes` (random weights: nothing is downloaded).
- `vit_tiny`: a small vision transformer (Dosovitskiy et al. 2021): a strided-convolution patch
  embedding, a class token and learned positions, pre-norm encoder layers, a linear head on the class token.
- `bn_dropout`: a small CNN with BatchNorm after each convolution and dropout before the head.
- `with_aux`: a CNN returning (logits, auxiliary logits), as Inception-style training code does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MnistNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def mnist_net():
    return MnistNet()


class CifarLeNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def cifar_lenet(num_classes):
    return CifarLeNet(num_classes)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet18(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, cin = [], width
        for k, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2 ** k
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def cifar_resnet18(num_classes, in_channels):
    return CifarResNet18(num_classes, in_channels)


def tv_resnet18(num_classes):
    import torchvision

    return torchvision.models.resnet18(num_classes=num_classes)


def tv_mobilenet_v3_small(num_classes):
    import torchvision

    return torchvision.models.mobilenet_v3_small(num_classes=num_classes)


def tv_efficientnet_b0(num_classes):
    import torchvision

    return torchvision.models.efficientnet_b0(num_classes=num_classes)


class VitTiny(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, image_size, patch: int = 4, dim: int = 64,
                 depth: int = 2, heads: int = 4):
        super().__init__()
        h, w = image_size
        self.embed = nn.Conv2d(in_channels, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 1 + (h // patch) * (w // patch), dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.1, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.encoder(tokens))[:, 0])


def vit_tiny(num_classes, in_channels, image_size):
    return VitTiny(num_classes, in_channels, image_size)


def bn_dropout(num_classes, in_channels):
    return nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(32, num_classes))


class WithAux(nn.Module):
    def __init__(self, num_classes: int, in_channels: int):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(32, num_classes)
        self.aux = nn.Linear(32, num_classes)

    def forward(self, x):
        f = self.features(x)
        return self.head(f), self.aux(f)


def with_aux(num_classes, in_channels):
    return WithAux(num_classes, in_channels)
