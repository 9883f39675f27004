"""Datasets: offline digits, synthetic teacher, npz with its failure modes, CIFAR-10 batches and image
folders read directly, on files the tests write."""

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


def test_gratings_are_labelled_by_orientation_whatever_their_polarity():
    # The label must be recoverable from what is polarity- and phase-free: a logistic regression on
    # the images' Fourier magnitudes (|FFT| is the same for a grating and its negative) beats the
    # 1/8 chance level by far (noise twice the amplitude); on the raw pixels, where the two polarities
    # cancel, it does not.
    from sklearn.linear_model import LogisticRegression
    data = load_dataset("gratings", seed=0)
    assert data.train_x.shape[1:] == (1, 8, 8) and data.num_classes == 8
    assert torch.equal(load_dataset("gratings", seed=0).train_x, data.train_x)
    assert load_dataset("gratings", seed=0, input_shape=(3, 12, 12)).train_x.shape[1:] == (3, 12, 12)
    counts = torch.bincount(data.train_y, minlength=8)
    assert counts.min() > 0.8 * counts.float().mean()
    def magnitudes(x):
        return torch.fft.fft2(x[:, 0]).abs().reshape(len(x), -1).numpy()
    spectral = LogisticRegression(max_iter=2000).fit(magnitudes(data.train_x), data.train_y.numpy())
    pixels = LogisticRegression(max_iter=2000).fit(data.train_x.reshape(len(data.train_x), -1).numpy(),
                                                   data.train_y.numpy())
    assert spectral.score(magnitudes(data.val_x), data.val_y.numpy()) > 0.35  # 0.47 measured; chance 0.125
    assert pixels.score(data.val_x.reshape(len(data.val_x), -1).numpy(), data.val_y.numpy()) < 0.25


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


def test_unknown_sources_and_missing_files_give_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="did you mean 'digits'"):
        load_dataset("digitz")
    with pytest.raises(DatasetError, match="never downloads"):
        load_dataset("cifar10:/nonexistent")
    with pytest.raises(DatasetError, match="never downloads"):
        load_dataset("imagefolder:/nonexistent")
    with pytest.raises(DatasetError, match="no data_batch_1..5"):
        load_dataset(f"cifar10:{tmp_path}")
    with pytest.raises(DatasetError, match="no images in class subfolders"):
        load_dataset(f"imagefolder:{tmp_path}")


def _cifar_batches(folder, batches=2, per_batch=10):
    """Write CIFAR-10 python batches as the dataset ships them: pickled dicts of bytes keys."""
    import pickle
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, labels = [], []
    for index in range(1, batches + 1):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        targets = list(rng.integers(0, 10, size=per_batch).tolist())
        with open(folder / f"data_batch_{index}", "wb") as handle:
            pickle.dump({b"batch_label": b"training batch", b"labels": targets, b"data": data, b"filenames": []},
                        handle, protocol=2)
        images.append(data)
        labels += targets
    return np.concatenate(images), np.array(labels)


def test_cifar10_batches_are_read_directly_r_g_b_planes_of_32_by_32(tmp_path):
    from initlab.data import _cifar10
    data, labels = _cifar_batches(tmp_path / "cifar-10-batches-py")
    x, y = _cifar10(str(tmp_path))  # the folder holding cifar-10-batches-py, as torchvision's root
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.float32 and np.array_equal(y, labels)
    assert np.array_equal(x[3, 1].ravel(), data[3, 1024:2048])  # the G plane of image 3
    dataset = load_dataset(f"cifar10:{tmp_path / 'cifar-10-batches-py'}", seed=0)
    assert dataset.input_shape == (3, 32, 32) and len(dataset.train_x) + len(dataset.val_x) == 20


def test_a_cifar_file_that_would_run_code_is_refused(tmp_path):
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "data_batch_1", "wb") as handle:
        pickle.dump({b"data": Payload(), b"labels": []}, handle)
    with pytest.raises(DatasetError, match="not a CIFAR-10 batch.*refused to load"):
        load_dataset(f"cifar10:{folder}")
    assert not (tmp_path / "pwned").exists()


def test_an_image_folder_is_read_with_pillow_one_class_per_subfolder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    expected = {}
    for label, name in enumerate(("cat", "dog")):  # sorted class names give the labels
        (tmp_path / name).mkdir()
        for index in range(6):
            pixels = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{index}.png")
            expected[(label, index)] = pixels
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    Image.fromarray(np.zeros((5, 7), dtype=np.uint8)).save(tmp_path / "dog" / "gray.png")  # grayscale: made RGB
    from initlab.data import _image_folder
    x, y = _image_folder(str(tmp_path))
    assert x.shape == (13, 3, 5, 7) and list(y) == [0] * 6 + [1] * 7
    assert np.array_equal(x[0], expected[(0, 0)].transpose(2, 0, 1))
    assert load_dataset(f"imagefolder:{tmp_path}", seed=0).num_classes == 2
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "cat" / "small.png")
    with pytest.raises(DatasetError, match="images differ in size"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_train_runs_on_a_local_image_folder_from_the_shell(tmp_path, capsys):
    from PIL import Image

    from initlab.cli import main
    rng = np.random.default_rng(1)
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        for index in range(8):
            Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).save(tmp_path / name / f"{index}.png")
    code = main(["train", "--dataset", f"imagefolder:{tmp_path}", "--model", "mlp", "--depth", "3", "--width", "16",
                 "--steps", "2", "--quiet", "--format", "json"])
    assert code == 0
    import json
    document = json.loads(capsys.readouterr().out)
    assert document["config"]["dataset"] == f"imagefolder:{tmp_path}" and len(document["history"]) >= 1
