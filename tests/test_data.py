"""Datasets: offline digits, synthetic teacher, npz with its failure modes, torchvision-only sources."""

import numpy as np
import pytest
import torch

from initlab.data import DatasetError, load_dataset


def test_digits_are_offline_split_by_seed_and_standardized():
    data = load_dataset("digits", seed=0)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert len(data.train_x) + len(data.val_x) == 1797
    assert abs(data.train_x.mean().item()) < 1e-5 and data.train_x.std().item() == pytest.approx(1.0, rel=1e-3)
    again = load_dataset("digits", seed=0)
    other = load_dataset("digits", seed=1)
    assert torch.equal(data.val_y, again.val_y) and not torch.equal(data.val_y, other.val_y)


def test_synthetic_takes_any_shape_and_is_learnable_by_its_teacher_class():
    data = load_dataset("synthetic", seed=2, input_shape=(3, 4, 4))
    assert data.input_shape == (3, 4, 4)
    counts = torch.bincount(data.train_y, minlength=data.num_classes)
    assert (counts > 0).sum() >= 5  # the teacher uses most classes


def test_npz_round_trip_and_errors(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, x=np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32), y=np.arange(50) % 3)
    data = load_dataset(f"npz:{good}")
    assert data.input_shape == (6,) and data.num_classes == 3
    cases = {
        "missing.npz": (None, "file not found"),
        "no_y.npz": (dict(x=np.zeros((20, 3))), "missing array"),
        "float_y.npz": (dict(x=np.zeros((20, 3)), y=np.zeros(20)), "integer labels"),
        "nan_x.npz": (dict(x=np.full((20, 3), np.nan), y=np.zeros(20, dtype=int)), "NaN"),
        "text_x.npz": (dict(x=np.array([["a"]] * 20), y=np.zeros(20, dtype=int)), "numeric"),
    }
    for name, (arrays, message) in cases.items():
        if arrays is not None:
            np.savez(tmp_path / name, **arrays)
        with pytest.raises(DatasetError, match=message):
            load_dataset(f"npz:{tmp_path / name}")


def test_unknown_and_torchvision_sources_give_clear_errors():
    with pytest.raises(DatasetError, match="did you mean 'digits'"):
        load_dataset("digitz")
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(DatasetError, match="needs torchvision"):
            load_dataset("cifar10:/nonexistent")
    else:
        with pytest.raises(DatasetError, match="never downloads"):
            load_dataset("cifar10:/nonexistent")
