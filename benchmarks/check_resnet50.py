"""Time `initlab.check` on a ResNet-50-sized network at 224×224, batch 8.

The network is torchvision's ResNet-50 layout (Bottleneck blocks [3, 4, 6, 3], widths 64–2048,
25.6 M parameters) written out here so that torchvision is not needed; torchvision's own model is
used when it is installed. Prints the check's wall time next to one bare forward+backward of the
same model and batch, measured side by side in this run.

    python benchmarks/check_resnet50.py
"""

import time

import torch
from torch import nn

import initlab


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        out_channels = channels * 4
        self.conv1, self.bn1 = nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels)
        self.conv2, self.bn2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False), nn.BatchNorm2d(channels)
        self.conv3, self.bn3 = nn.Conv2d(channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


def resnet50(num_classes: int = 1000) -> nn.Module:
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    in_channels = 64
    for stage, count in enumerate((3, 4, 6, 3)):
        for block in range(count):
            layers.append(Bottleneck(in_channels, 64 * 2 ** stage, 2 if stage > 0 and block == 0 else 1))
            in_channels = 64 * 2 ** stage * 4
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes))
    for module in model.modules():  # torchvision's init
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model


def main() -> None:
    try:
        from torchvision.models import resnet50 as torchvision_resnet50
        model, source = torchvision_resnet50(), "torchvision"
    except ImportError:
        model, source = resnet50(), "benchmarks/check_resnet50.py (torchvision layout)"
    torch.manual_seed(0)
    batch = torch.randn(8, 3, 224, 224)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"ResNet-50 from {source}: {parameters / 1e6:.1f} M parameters, batch 8 × 3×224×224, "
          f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    model.train()
    start = time.perf_counter()
    model(batch).square().mean().backward()
    bare = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    report = initlab.check(model, batch)
    checked = time.perf_counter() - start
    print(report.text())
    print(f"bare forward+backward {bare:.2f} s · initlab.check {checked:.2f} s · ratio {checked / bare:.2f}")


if __name__ == "__main__":
    main()
