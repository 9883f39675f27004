"""The "did you mean" of every name lookup."""

import pytest

from initlab.activations import parse_activation
from initlab.names import did_you_mean
from initlab.schemes import parse_scheme


def test_the_closest_name_is_offered_and_nothing_when_none_is_close():
    assert did_you_mean("kaimnig", ["kaiming", "xavier"]) == "; did you mean 'kaiming'?"
    assert did_you_mean("zzz", ["kaiming", "xavier"]) == ""


def test_every_registry_lookup_uses_it():
    with pytest.raises(ValueError, match=r"unknown init scheme 'xavir'; valid: .*; did you mean 'xavier'\?"):
        parse_scheme("xavir")
    with pytest.raises(ValueError, match=r"unknown activation 'prelux'.*did you mean 'prelu'\?"):
        parse_activation("prelux")


def test_models_and_datasets_are_registries_of_callables_that_list_prints():
    import io
    from contextlib import redirect_stdout

    from initlab.cli import main
    from initlab.data import DATASET_LOADERS, DATASETS
    from initlab.models import MODELS, ModelRecipe
    assert all(callable(entry.factory) and callable(entry.default_shape) for entry in MODELS.values())
    assert all(callable(entry.load) for entry in DATASET_LOADERS.values())
    assert ModelRecipe("mlp", width=12).example_shape() == MODELS["mlp"].default_shape(ModelRecipe("mlp", width=12))
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["list"]) == 0
    listed = buffer.getvalue()
    assert all(f"  {name:<16} " in listed for name in list(MODELS) + list(DATASETS))
