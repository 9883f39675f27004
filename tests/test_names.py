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
