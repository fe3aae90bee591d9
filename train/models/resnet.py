"""ResNet image encoders (He et al., CVPR 2016) for CrossPoint, written without torchvision.

Parameter and buffer names match torchvision's ``resnet50`` / ``resnet18`` exactly (less
``fc``, which CrossPoint replaces by an identity), so a torchvision or reference-release
checkpoint loads by name. The projection head follows the reference image encoder:
``Linear(F, 512, bias=False) -> BN -> ReLU -> Linear(512, proj_dim, bias=False)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor, nn

from xpt.train.models.checkpoint import LoadReport, load_renamed_state_dict, strip_module_prefix
from xpt.train.models.heads import REFERENCE_HEAD_NAMES, ProjectionHead

HEAD_HIDDEN = 512


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, torchvision's "ResNet v1.5") -> 1x1 with a residual (ResNet-50)."""

    expansion = 4

    def __init__(
        self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_ch, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet backbone + CrossPoint projection head, trained from scratch.

    Input images (B, 3, H, W) float, ImageNet-normalised. ``forward_features`` -> (B, F)
    after global average pooling (F = 2048 for ResNet-50, 512 for ResNet-18),
    ``forward_head`` -> (B, proj_dim), ``forward`` -> both.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        *,
        proj_dim: int = 256,
    ) -> None:
        super().__init__()
        if proj_dim < 1:
            raise ValueError(f"proj_dim must be >= 1, got {proj_dim}")
        self.in_ch = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = 512 * block.expansion
        self.head = ProjectionHead(self.feature_dim, HEAD_HIDDEN, proj_dim, bias=False)
        # torchvision's initialisation of the backbone (the head keeps PyTorch defaults).
        for name, m in self.named_modules():
            if name.startswith("head"):
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_ch != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.in_ch, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.in_ch, planes, stride, downsample)]
        self.in_ch = planes * block.expansion
        layers += [block(self.in_ch, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, images: Tensor) -> Tensor:
        """Global feature (B, F): average-pooled ``layer4`` output."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward_head(self, feat: Tensor) -> Tensor:
        """Projection (B, proj_dim) of a global feature (B, F)."""
        return self.head(feat)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.forward_features(images)
        return feat, self.forward_head(feat)


def resnet50(*, proj_dim: int = 256) -> ResNet:
    """ResNet-50 (Bottleneck, 3-4-6-3), global feature 2048."""
    return ResNet(Bottleneck, (3, 4, 6, 3), proj_dim=proj_dim)


def resnet18(*, proj_dim: int = 256) -> ResNet:
    """ResNet-18 (BasicBlock, 2-2-2-2), global feature 512."""
    return ResNet(BasicBlock, (2, 2, 2, 2), proj_dim=proj_dim)


_HEAD = re.compile(r"^inv_head\.(\d+)\.(.+)$")


def checkpoint_filter_fn(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a reference-release image-encoder state dict to our names.

    ``resnet.<torchvision key>`` -> ``<torchvision key>``; ``inv_head.{0,1,3}`` ->
    ``head.{fc1,bn,fc2}``; a leading ``module.`` is stripped. Other keys (e.g. a
    torchvision ``fc.*``) pass through so the loader reports them as unexpected.
    """
    out: dict[str, Tensor] = {}
    for key, value in strip_module_prefix(state_dict).items():
        if key.startswith("resnet."):
            out[key[len("resnet.") :]] = value
        elif (m := _HEAD.match(key)) and m.group(1) in REFERENCE_HEAD_NAMES:
            out[f"head.{REFERENCE_HEAD_NAMES[m.group(1)]}.{m.group(2)}"] = value
        else:
            out[key] = value
    return out


def load_reference_state_dict(
    model: ResNet, state_dict: Mapping[str, Tensor], *, strict: bool = True
) -> LoadReport:
    """Load a state dict saved by the CrossPoint release (``ResNet(resnet50())`` wrapper).

    Missing / unexpected keys are named (ValueError when ``strict``); a tensor of the wrong
    shape is always refused naming the key and both shapes.
    """
    return load_renamed_state_dict(model, checkpoint_filter_fn(state_dict), strict=strict)
