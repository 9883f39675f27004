"""Networks to probe: the paper's plain nets, MLPs, and any user ``nn.Module`` factory.

Depth counts weight layers (Conv + Linear) including the 3 fully-connected ones, as the paper
does: ``plain_net(depth=30)`` is 27 conv + 3 fc (the paper's Figure 3 net), ``depth=22`` its
Figure 2 depth. Plain means no batch normalization and no residual connections.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .activations import make_activation
from .names import did_you_mean
from .schemes import Scheme, apply_init


class ModelError(ValueError):
    """A model name, layout or user factory that cannot be built."""


def plain_net(depth: int = 30, width: int = 16, input_shape: tuple[int, ...] = (3, 32, 32), act: str = "relu",
              stages: int = 3, num_classes: int = 10, fc_width: int = 256) -> nn.Sequential:
    """Return the paper's style of plain VGG-like net, scaled for a CPU.

    ``depth − 3`` 3×3 conv layers (padding 1) split as evenly as possible over ``stages``
    stages of ``width·2^s`` channels, a 2×2 max-pool after each stage, then
    fc ``fc_width`` → fc ``fc_width`` → fc ``num_classes``; ``act`` after every layer but the last.
    """
    if len(input_shape) != 3:
        raise ModelError(f"plain takes an input shape C,H,W; got {','.join(map(str, input_shape))}")
    if stages < 1:
        raise ModelError(f"stages must be at least 1, got {stages}")
    if depth - 3 < stages:
        raise ModelError(f"plain depth {depth} leaves {depth - 3} conv layers for {stages} stages; "
                         f"use depth ≥ {stages + 3}")
    if width < 1 or fc_width < 1:
        raise ModelError(f"width must be positive, got {width}")
    channels, height, width_px = input_shape
    if min(height, width_px) < 2 ** stages:
        raise ModelError(f"input {height}×{width_px} is too small for {stages} pooling stages "
                         f"(needs at least {2 ** stages}×{2 ** stages})")
    convs = depth - 3
    per_stage = [convs // stages + (1 if s < convs % stages else 0) for s in range(stages)]
    layers: list[nn.Module] = []
    in_channels = channels
    for stage, count in enumerate(per_stage):
        out_channels = width * 2 ** stage
        for _ in range(count):
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), make_activation(act, out_channels)]
            in_channels = out_channels
        layers.append(nn.MaxPool2d(2))
    features = in_channels * (height // 2 ** stages) * (width_px // 2 ** stages)
    layers += [
        nn.Flatten(),
        nn.Linear(features, fc_width), make_activation(act, fc_width),
        nn.Linear(fc_width, fc_width), make_activation(act, fc_width),
        nn.Linear(fc_width, num_classes),
    ]
    return nn.Sequential(*layers)


class SpatialPyramidPool(nn.Module):
    """Spatial pyramid max-pooling (He et al. 2014), levels {7, 3, 2, 1} as in the paper's Table 3."""

    def __init__(self, levels: tuple[int, ...] = (7, 3, 2, 1)):
        super().__init__()
        self.levels = levels
        self.pools = nn.ModuleList(nn.AdaptiveMaxPool2d(level) for level in levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([pool(x).flatten(1) for pool in self.pools], dim=1)


# The paper's Table 3 layouts at 224×224 (conv1 7×7/2, pool 3×3/3, three stages of 3×3 convs with
# 2×2/2 pools between, SPP, fc 4096, fc 4096, fc 1000). The paper gives no widths for the
# 30-layer Figure 3 net: "paper-30" is model B's stages lengthened to 26 3×3 convs (9/9/8).
PAPER_LAYOUTS: dict[str, tuple[int, tuple[tuple[int, int], ...], str]] = {
    "paper-a": (96, ((256, 5), (512, 5), (512, 5)), "model A, 19 layers (Table 3)"),
    "paper-b": (96, ((256, 6), (512, 6), (512, 6)), "model B, 22 layers (Table 3, Figure 2)"),
    "paper-c": (96, ((384, 6), (768, 6), (896, 6)), "model C, 22 layers, wider (Table 3)"),
    "paper-30": (96, ((256, 9), (512, 9), (512, 8)), "30 layers (Figure 3), model B's stages lengthened"),
}


def paper_net(name: str, act: str = "relu", num_classes: int = 1000) -> nn.Sequential:
    """Return one of the paper's full-size layouts (224×224 input; meant for a GPU)."""
    if name not in PAPER_LAYOUTS:
        raise ModelError(f"unknown paper layout {name!r}; valid: {', '.join(PAPER_LAYOUTS)}")
    conv1_width, stages, _ = PAPER_LAYOUTS[name]
    layers: list[nn.Module] = [nn.Conv2d(3, conv1_width, 7, stride=2, padding=3), make_activation(act, conv1_width),
                               nn.MaxPool2d(3, stride=3)]
    in_channels = conv1_width
    for stage, (out_channels, count) in enumerate(stages):
        if stage > 0:
            layers.append(nn.MaxPool2d(2))
        for _ in range(count):
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), make_activation(act, out_channels)]
            in_channels = out_channels
    spp = SpatialPyramidPool()
    features = in_channels * sum(level * level for level in spp.levels)
    layers += [spp, nn.Linear(features, 4096), make_activation(act, 4096), nn.Linear(4096, 4096),
               make_activation(act, 4096), nn.Linear(4096, num_classes)]
    return nn.Sequential(*layers)


def mlp(depth: int = 10, width: int = 256, input_shape: tuple[int, ...] | None = None, act: str = "relu",
        num_classes: int = 10) -> nn.Sequential:
    """Return a plain MLP of ``depth`` Linear layers, ``width`` units, ``act`` between layers.

    The input (default shape ``(width,)``) is flattened first; the last layer has ``num_classes``
    outputs.
    """
    if depth < 1 or width < 1:
        raise ModelError(f"mlp needs depth ≥ 1 and width ≥ 1, got depth {depth}, width {width}")
    in_features = width if input_shape is None else int(torch.Size(input_shape).numel())
    layers: list[nn.Module] = [nn.Flatten()]
    for index in range(depth):
        last = index == depth - 1
        out_features = num_classes if last else width
        layers.append(nn.Linear(in_features, out_features))
        if not last:
            layers.append(make_activation(act, out_features))
        in_features = out_features
    return nn.Sequential(*layers)


def load_factory(target: str) -> Callable[[], nn.Module]:
    """Return the callable named by ``package.module:factory`` or ``path/to/file.py:factory``.

    Importing the module runs its code: this is the only user code initlab executes.
    """
    module_name, colon, attribute = target.rpartition(":")
    if not colon or not module_name or not attribute:
        raise ModelError(f"model {target!r}: expected package.module:factory or path/to/file.py:factory")
    try:
        if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise ModelError(f"model {target!r}: file {module_name} not found")
            spec = importlib.util.spec_from_file_location(f"initlab_user_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            # as ``python -m`` does: a package in the working directory is importable
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except ModelError:
        raise
    except Exception as error:  # the user's module failed to import: say why in one line
        raise ModelError(f"model {target!r}: importing {module_name} failed: {type(error).__name__}: {error}") from error
    if not hasattr(module, attribute):
        public = [name for name in dir(module) if not name.startswith("_") and callable(getattr(module, name))]
        raise ModelError(f"model {target!r}: {module_name} has no attribute {attribute!r}"
                         f"{did_you_mean(attribute, public)}")
    factory = getattr(module, attribute)
    if not callable(factory):
        raise ModelError(f"model {target!r}: {attribute} is not callable")
    return factory


def call_factory(factory: Callable[[], nn.Module], target: str) -> nn.Module:
    """Call a user factory and check that it returned an ``nn.Module``."""
    try:
        model = factory()
    except Exception as error:
        raise ModelError(f"model {target!r}: the factory raised {type(error).__name__}: {error}") from error
    if not isinstance(model, nn.Module):
        raise ModelError(f"model {target!r}: the factory returned {type(model).__name__}, not an nn.Module")
    return model


def build_seeded(factory: Callable[[], nn.Module], seed: int, *, device: torch.device | None = None,
                 init: str | Scheme | None = None) -> nn.Module:
    """Return ``factory()`` called after ``torch.manual_seed(seed)``, re-initialized with ``init``
    (None: its own init) from the same seed, on ``device``: the model a seed stands for.

    Seeds the global RNG (callers that must leave it as found fork it first). The init is drawn
    before the move when the model is built on the CPU (``place``)."""
    torch.manual_seed(seed)
    model = factory()
    if not isinstance(model, nn.Module):
        raise ModelError(f"the model factory returned {type(model).__name__}, not an nn.Module")
    return place(model, seed, device=device, init=init)


def build_reproducibly(factory: Callable[[], nn.Module], *, device: torch.device | None = None) -> nn.Module:
    """Return ``factory()`` called after ``torch.manual_seed(0)`` with the caller's global RNG left
    as found: a user factory's own init (which draws from that RNG) gives the same weights each run."""
    with torch.random.fork_rng(devices=[]):
        return build_seeded(factory, 0, device=device)


def place(model: nn.Module, seed: int, *, device: torch.device | None = None,
          init: str | Scheme | None = None) -> nn.Module:
    """Return ``model`` re-initialized with ``init`` from ``seed`` and moved to ``device``.

    On the CPU the init is drawn before the move: the CPU generator's draws land in the weights
    themselves and cross to the device with them, not once more per layer through a staging tensor
    (``Scheme.init_layer_``). The weights are the same either way."""
    drawn_first = init is not None and model_device(model).type == "cpu"
    if drawn_first:
        apply_init(model, init, seed=seed)
    if device is not None:
        model = model.to(device)
    if init is not None and not drawn_first:
        apply_init(model, init, seed=seed)
    return model


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for a model with neither)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@dataclass(frozen=True)
class BuiltinModel:
    """A registry entry: what the model is, one example's default shape, and its factory.

    ``default_shape(recipe)`` and ``factory(recipe)`` take the ``ModelRecipe`` (depth, width,
    input shape, activation, stages, classes); ``factory`` builds once to raise a layout error
    there, then returns a zero-argument callable that builds a fresh model."""

    description: str
    default_shape: Callable[["ModelRecipe"], tuple[int, ...]]
    factory: Callable[["ModelRecipe"], Callable[[], nn.Module]]


def _plain_factory(recipe: "ModelRecipe") -> Callable[[], nn.Module]:
    depth, width, shape = recipe.depth or 30, recipe.width or 16, recipe.example_shape()
    act, stages, classes = recipe.act, recipe.stages, recipe.num_classes
    plain_net(depth, width, shape, act, stages, classes)  # raise layout errors now, not per seed
    return lambda: plain_net(depth, width, shape, act, stages, classes)


def _mlp_factory(recipe: "ModelRecipe") -> Callable[[], nn.Module]:
    depth, width, shape = recipe.depth or 10, recipe.width or 256, recipe.example_shape()
    act, classes = recipe.act, recipe.num_classes
    mlp(depth, width, shape, act, classes)
    return lambda: mlp(depth, width, shape, act, classes)


def _paper_factory(recipe: "ModelRecipe") -> Callable[[], nn.Module]:
    return lambda: paper_net(recipe.name, recipe.act, recipe.num_classes)


MODELS: dict[str, BuiltinModel] = {
    "plain": BuiltinModel("the paper's plain conv net scaled for a CPU (--depth, --width, --input-shape C,H,W)",
                          lambda recipe: (3, 32, 32), _plain_factory),
    "mlp": BuiltinModel("plain MLP (--depth Linear layers of --width units)",
                        lambda recipe: (recipe.width or 256,), _mlp_factory),
    **{name: BuiltinModel(description + ", 224×224", lambda recipe: (3, 224, 224), _paper_factory)
       for name, (_, _, description) in PAPER_LAYOUTS.items()},
}
BUILTIN_MODELS: dict[str, str] = {name: entry.description for name, entry in MODELS.items()}


@dataclass(frozen=True)
class ModelRecipe:
    """How to build a model for one seed: a name and its options, resolved once."""

    name: str
    depth: int | None = None
    width: int | None = None
    input_shape: tuple[int, ...] | None = None
    act: str = "relu"
    stages: int = 3
    num_classes: int = 10

    @property
    def is_user(self) -> bool:
        return self.name not in MODELS

    def example_shape(self) -> tuple[int, ...]:
        """Return the shape of one example (no batch dimension)."""
        if self.name in MODELS:
            return self.input_shape or MODELS[self.name].default_shape(self)
        if self.input_shape is None:
            raise ModelError(f"model {self.name!r} needs input_shape (one example's shape, e.g. 3,224,224)")
        return self.input_shape

    def factory(self) -> Callable[[], nn.Module]:
        """Return a zero-argument callable that builds a fresh model (checked once here)."""
        if self.name in MODELS:
            return MODELS[self.name].factory(self)
        if ":" not in self.name:
            raise ModelError(f"unknown model {self.name!r}; valid: {', '.join(MODELS)}, "
                             f"or package.module:factory / path/to/file.py:factory{did_you_mean(self.name, MODELS)}")
        user_factory = load_factory(self.name)
        return lambda: call_factory(user_factory, self.name)
