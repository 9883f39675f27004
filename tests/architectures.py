"""Networks in the style of real ones, defined here so the check is tested without torchvision or timm.

- ``resnet18``: torchvision's ResNet-18 layout (BasicBlock, [2, 2, 2, 2], stem conv 7×7/2 + max-pool,
  ``out += identity`` then ReLU, 1×1 strided projection with BN on the downsampling blocks), with a
  ``width`` knob and ``norm=False`` for the unnormalized variant.
- ``vgg11``: torchvision's VGG-11 configuration "A" (8 convs, 3 fully-connected layers), with or
  without BatchNorm after each conv, scaled by ``width``.
- ``vit``: a small Vision-Transformer: patch embedding conv, pre-LayerNorm blocks of multi-head
  attention written with Linear layers (as timm does) and a GELU MLP, both added to the stream.
- ``mixer``: an MLP-Mixer: token-mixing and channel-mixing MLPs on transposed views, pre-LayerNorm,
  residual sums.

Each model keeps PyTorch's default init unless a test re-initializes it.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int, norm: bool):
        super().__init__()
        make_norm = (lambda c: nn.BatchNorm2d(c)) if norm else (lambda c: nn.Identity())
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = make_norm(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = make_norm(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False), make_norm(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...] = (2, 2, 2, 2), width: int = 64, num_classes: int = 10,
                 norm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width) if norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, in_channels = [], width
        for stage, count in enumerate(blocks):
            channels = width * 2 ** stage
            stage_blocks = []
            for block in range(count):
                stage_blocks.append(BasicBlock(in_channels, channels, 2 if stage > 0 and block == 0 else 1, norm))
                in_channels = channels
            stages.append(nn.Sequential(*stage_blocks))
        self.stages = len(stages)
        for position, stage in enumerate(stages):
            setattr(self, f"layer{position + 1}", stage)  # torchvision's names
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for position in range(self.stages):
            x = getattr(self, f"layer{position + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(width: int = 16, norm: bool = True, num_classes: int = 10) -> ResNet:
    return ResNet((2, 2, 2, 2), width, num_classes, norm)


VGG11 = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")


def vgg11(width: int = 8, batch_norm: bool = False, num_classes: int = 10, fc_width: int = 64) -> nn.Module:
    layers, in_channels = [], 3
    for item in VGG11:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        layers.append(nn.Conv2d(in_channels, width * item, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(width * item))
        layers.append(nn.ReLU(inplace=True))
        in_channels = width * item
    features = nn.Sequential(*layers)
    classifier = nn.Sequential(nn.Linear(in_channels, fc_width), nn.ReLU(True), nn.Dropout(0.5),
                               nn.Linear(fc_width, fc_width), nn.ReLU(True), nn.Dropout(0.5),
                               nn.Linear(fc_width, num_classes))
    return nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), classifier)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1)) * (dim // self.heads) ** -0.5
        out = (weights.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out)


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, image: int = 32, patch: int = 4, dim: int = 64, depth: int = 4, heads: int = 4,
                 num_classes: int = 10):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, (image // patch) ** 2, dim))
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x.mean(dim=1))


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, token_hidden), nn.GELU(), nn.Linear(token_hidden, tokens))
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = nn.Sequential(nn.Linear(dim, channel_hidden), nn.GELU(), nn.Linear(channel_hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class Mixer(nn.Module):
    def __init__(self, image: int = 32, patch: int = 4, dim: int = 64, depth: int = 4, num_classes: int = 10):
        super().__init__()
        tokens = (image // patch) ** 2
        self.stem = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.Sequential(*[MixerBlock(tokens, dim, tokens * 2, dim * 4) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(x)).mean(dim=1))
