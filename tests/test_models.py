"""Model zoo: the paper's depth counting, its full-size layouts, MLPs, and user factories."""

import textwrap

import pytest
import torch
from torch import nn

import initlab
from initlab.models import ModelError, ModelRecipe, load_factory, paper_net


def _weight_layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("depth", [22, 30, 8])
def test_plain_depth_counts_weight_layers_including_three_fc(depth):
    model = initlab.plain_net(depth=depth, width=4)
    layers = _weight_layers(model)
    assert len(layers) == depth
    assert [type(m) for m in layers[-3:]] == [nn.Linear] * 3
    assert not any(isinstance(m, (nn.BatchNorm2d,)) for m in model.modules())
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_plain_stages_widths_and_pools():
    model = initlab.plain_net(depth=30, width=16, stages=3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16] * 9 + [32] * 9 + [64] * 9
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3


@pytest.mark.parametrize("name,depth", [("paper-a", 19), ("paper-b", 22), ("paper-c", 22), ("paper-30", 30)])
def test_paper_layouts_have_the_papers_depth_at_224(name, depth):
    with torch.device("meta"):  # full size (hundreds of MB of fc weights): build shapes only
        model = paper_net(name)
        out = model(torch.empty(2, 3, 224, 224))
    assert len(_weight_layers(model)) == depth
    assert out.shape == (2, 1000)
    first = _weight_layers(model)[0]
    assert first.kernel_size == (7, 7) and first.stride == (2, 2)


def test_mlp_structure_and_input_flattening():
    model = initlab.mlp(depth=5, width=32, input_shape=(1, 4, 4), act="leaky:0.1")
    assert len(_weight_layers(model)) == 5
    assert model[1].in_features == 16
    assert model(torch.zeros(3, 1, 4, 4)).shape == (3, 10)


@pytest.mark.parametrize("kwargs,message", [
    (dict(depth=4, stages=3), "leaves 1 conv layers for 3 stages"),
    (dict(input_shape=(3, 4, 4), stages=3), "too small for 3 pooling stages"),
    (dict(input_shape=(32, 32)), "C,H,W"),
])
def test_plain_layout_errors_are_clear(kwargs, message):
    with pytest.raises(ModelError, match=message):
        initlab.plain_net(**kwargs)


def test_user_factory_from_a_file_and_a_module(tmp_path, monkeypatch):
    source = textwrap.dedent("""
        import torch.nn as nn
        def build():
            return nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
        def broken():
            raise RuntimeError("no weights today")
        def not_a_module():
            return 42
        VALUE = 3
    """)
    path = tmp_path / "user_nets.py"
    path.write_text(source)
    model = load_factory(f"{path}:build")()
    assert isinstance(model, nn.Sequential)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert isinstance(load_factory("user_nets:build")(), nn.Sequential)
    recipe = ModelRecipe(f"{path}:build", input_shape=(6,))
    assert recipe.example_shape() == (6,)
    assert isinstance(recipe.factory()(), nn.Module)
    for target, message in [
        (f"{path}:broken", "the factory raised RuntimeError: no weights today"),
        (f"{path}:not_a_module", "returned int, not an nn.Module"),
    ]:
        with pytest.raises(ModelError, match=message):
            ModelRecipe(target, input_shape=(6,)).factory()()
    for target, message in [
        (f"{path}:buld", "has no attribute 'buld'; did you mean 'build'"),
        (f"{path}:VALUE", "VALUE is not callable"),
        (f"{tmp_path}/missing.py:build", "not found"),
        ("no_such_package_xyz.models:build", "importing no_such_package_xyz.models failed: ModuleNotFoundError"),
        ("justaname", "expected package.module:factory"),
    ]:
        with pytest.raises(ModelError, match=message):
            load_factory(target)


def test_unknown_builtin_and_missing_input_shape():
    with pytest.raises(ModelError, match="did you mean 'plain'"):
        ModelRecipe("plian").factory()
    with pytest.raises(ModelError, match="needs input_shape"):
        ModelRecipe("pkg.mod:fn").example_shape()
