"""Datasets for short training runs, held in memory as tensors.

``digits`` (scikit-learn's bundled 8×8 handwritten digits, offline) is the default; ``synthetic``
is a generated task with a known teacher, ``gratings`` oriented gratings in noise; ``npz:PATH`` reads arrays ``x`` and ``y``;
``imagefolder:PATH`` (one subfolder per class, read with Pillow) and ``cifar10:ROOT`` (the python
batches, unpickled with arrays alone allowed) are read directly, with no torchvision, so they work
with any torch build. Nothing is ever downloaded. The train/validation split is fixed by the seed,
and inputs are standardized with the training split's per-channel mean and std.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .names import did_you_mean
from .schemes import stream_seed

DATA_STREAM = 3


class DatasetError(ValueError):
    """A dataset that cannot be loaded: unknown name, missing file, bad arrays."""


@dataclass(frozen=True)
class Dataset:
    """A split, standardized classification dataset in memory."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


def _digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        raise DatasetError("dataset 'digits' needs scikit-learn (pip install scikit-learn)") from None
    digits = load_digits()
    return digits.data.reshape(-1, 1, 8, 8).astype(np.float32), digits.target.astype(np.int64)


def _synthetic(seed: int, input_shape: tuple[int, ...], size: int = 4096,
               num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Return Gaussian inputs labelled by argmax of a fixed random 2-layer ReLU teacher."""
    generator = torch.Generator().manual_seed(stream_seed(seed, DATA_STREAM))
    features = math.prod(input_shape)
    x = torch.randn(size, features, generator=generator)
    hidden = torch.randn(features, 64, generator=generator) * math.sqrt(2.0 / features)
    readout = torch.randn(64, num_classes, generator=generator) / 8.0
    y = (torch.relu(x @ hidden) @ readout).argmax(dim=1)
    return x.reshape(size, *input_shape).numpy(), y.numpy()


GRATING_CLASSES = 8
GRATING_NOISE = 2.0  # Gaussian pixel noise, in units of the grating's amplitude at contrast 1


def _gratings(seed: int, input_shape: tuple[int, ...], size: int = 4096,
              num_classes: int = GRATING_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Return oriented sinusoidal gratings in noise, labelled by orientation (``num_classes`` bins of
    180°): random phase (so either polarity), spatial frequency 0.15–0.35 cycles per pixel, contrast
    0.5–1.5, Gaussian noise of ``GRATING_NOISE``; each channel its own noise.

    A task with the structure of natural images' first layer (oriented edges of either sign), where
    a first layer that passes negative responses gains; Table 1's slopes are learned on it."""
    generator = torch.Generator().manual_seed(stream_seed(seed, DATA_STREAM))
    channels, height, width = input_shape if len(input_shape) == 3 else (1, *input_shape[-2:])
    labels = torch.randint(0, num_classes, (size,), generator=generator)
    angle = (labels.double() + 0.3 * torch.rand(size, generator=generator, dtype=torch.float64)) * math.pi / num_classes
    frequency = 2 * math.pi * (0.15 + 0.2 * torch.rand(size, generator=generator, dtype=torch.float64))
    phase = 2 * math.pi * torch.rand(size, generator=generator, dtype=torch.float64)
    contrast = 0.5 + torch.rand(size, generator=generator, dtype=torch.float64)
    rows = torch.arange(height, dtype=torch.float64) - (height - 1) / 2
    columns = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
    y, x = torch.meshgrid(rows, columns, indexing="ij")
    along = torch.cos(angle)[:, None, None] * x + torch.sin(angle)[:, None, None] * y
    grating = contrast[:, None, None] * torch.cos(frequency[:, None, None] * along + phase[:, None, None])
    images = grating[:, None] + GRATING_NOISE * torch.randn(size, channels, height, width, generator=generator,
                                                            dtype=torch.float64)
    return images.float().numpy(), labels.numpy()


def _npz(path: str) -> tuple[np.ndarray, np.ndarray]:
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"dataset npz:{path}: file not found")
    try:
        arrays = np.load(file, allow_pickle=False)
    except Exception as error:
        raise DatasetError(f"dataset npz:{path}: cannot read it as .npz ({type(error).__name__}: {error})") from None
    missing = [key for key in ("x", "y") if key not in arrays.files]
    if missing:
        raise DatasetError(f"dataset npz:{path}: missing array(s) {', '.join(missing)} (has {', '.join(arrays.files)})")
    x, y = arrays["x"], arrays["y"]
    if not np.issubdtype(x.dtype, np.number) or x.ndim < 2:
        raise DatasetError(f"dataset npz:{path}: x must be a numeric array (N, ...), got {x.dtype} {x.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (x.shape[0],):
        raise DatasetError(f"dataset npz:{path}: y must be integer labels of shape ({x.shape[0]},), "
                           f"got {y.dtype} {y.shape}")
    if not np.all(np.isfinite(x)):
        raise DatasetError(f"dataset npz:{path}: x contains NaN or Inf")
    if y.min() < 0:
        raise DatasetError(f"dataset npz:{path}: labels must be ≥ 0, found {y.min()}")
    return x.astype(np.float32), y.astype(np.int64)


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and NumPy arrays, nothing else: a CIFAR batch file
    holds no code, and one that tries to run any is refused (as checkpoints load ``weights_only``)."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # bytes in protocol-2 pickles

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}")
        return super().find_class(module, name)


def _cifar10(root: str) -> tuple[np.ndarray, np.ndarray]:
    """The CIFAR-10 training batches of the python version, read directly (no torchvision): ROOT is
    the extracted ``cifar-10-batches-py`` folder or the folder holding it. Each batch is a pickled
    dict with ``data`` (N, 3072) uint8, the R, G and B planes of 32×32 images, and ``labels``."""
    folder = Path(root)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    if not folder.is_dir():
        raise DatasetError(f"dataset cifar10:{root}: {root} not found (initlab never downloads data)")
    files = [folder / name for name in CIFAR10_TRAIN_BATCHES if (folder / name).is_file()]
    if not files:
        raise DatasetError(f"dataset cifar10:{root}: no data_batch_1..5 in {folder} (the python version of "
                           "CIFAR-10, extracted)")
    images, labels = [], []
    for file in files:
        try:
            with open(file, "rb") as handle:
                batch = _ArraysOnly(handle, encoding="bytes").load()
            data, targets = batch[b"data"], batch[b"labels"]
        except (pickle.UnpicklingError, KeyError, EOFError, TypeError, ValueError) as error:
            raise DatasetError(f"dataset cifar10:{root}: {file.name} is not a CIFAR-10 batch ({error})") from None
        images.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(targets, dtype=np.int64))
    return np.concatenate(images).astype(np.float32), np.concatenate(labels)


def _image_folder(path: str) -> tuple[np.ndarray, np.ndarray]:
    """An image folder read directly with Pillow (no torchvision): one subfolder per class, classes
    in sorted order (torchvision's ``ImageFolder`` convention), images as RGB, all of one size."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(path)
    if not folder.is_dir():
        raise DatasetError(f"dataset imagefolder:{path}: {path} not found (initlab never downloads data)")
    classes = sorted(child.name for child in folder.iterdir() if child.is_dir())
    samples = [(file, label) for label, name in enumerate(classes) for file in sorted((folder / name).rglob("*"))
               if file.is_file() and file.suffix.lower() in IMAGE_EXTENSIONS]
    if not samples:
        raise DatasetError(f"dataset imagefolder:{path}: no images in class subfolders of {path}")
    images = []
    for file, _ in samples:
        try:
            with Image.open(file) as image:
                images.append(np.asarray(image.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1))
        except (UnidentifiedImageError, OSError) as error:
            raise DatasetError(f"dataset imagefolder:{path}: cannot read {file}: {error}") from None
    if len({image.shape for image in images}) != 1:
        raise DatasetError(f"dataset imagefolder:{path}: images differ in size; resize them to one size first")
    return np.stack(images).astype(np.float32), np.asarray([label for _, label in samples], dtype=np.int64)


@dataclass(frozen=True)
class DatasetLoader:
    """A registry entry: its name as listed, what it is, and ``load(kind, argument, seed,
    input_shape) -> (x, y)`` as NumPy arrays; ``takes_path``: the name needs ``:PATH``."""

    listed: str
    description: str
    load: Callable[[str, str, int, tuple[int, ...] | None], tuple[np.ndarray, np.ndarray]]
    takes_path: bool = False


DATASET_LOADERS: dict[str, DatasetLoader] = {
    "digits": DatasetLoader("digits", "scikit-learn's 8×8 handwritten digits, 1797 images, 10 classes (offline; the "
                            "default)", lambda kind, argument, seed, shape: _digits()),
    "synthetic": DatasetLoader("synthetic", "Gaussian inputs labelled by a fixed random teacher (a 2-layer ReLU net); "
                               "any --input-shape", lambda kind, argument, seed, shape: _synthetic(seed, shape or
                                                                                                   (1, 8, 8))),
    "gratings": DatasetLoader("gratings", f"oriented gratings of either polarity in noise, 4096 images, "
                              f"{GRATING_CLASSES} orientation classes; any C,H,W --input-shape (default 1×8×8)",
                              lambda kind, argument, seed, shape: _gratings(seed, shape or (1, 8, 8))),
    "npz": DatasetLoader("npz:PATH", "a .npz file with arrays x (N, ...) and integer labels y (N,)",
                         lambda kind, argument, seed, shape: _npz(argument), takes_path=True),
    "imagefolder": DatasetLoader("imagefolder:PATH", "one subfolder of images per class at PATH (read with Pillow; "
                                 "local files only)", lambda kind, argument, seed, shape: _image_folder(argument),
                                 takes_path=True),
    "cifar10": DatasetLoader("cifar10:ROOT", "CIFAR-10's python batches extracted under ROOT (read directly; never "
                             "downloads)", lambda kind, argument, seed, shape: _cifar10(argument), takes_path=True),
}
DATASETS: dict[str, str] = {entry.listed: entry.description for entry in DATASET_LOADERS.values()}


def scaled_inputs(dataset: Dataset, factor: float) -> Dataset:
    """Return ``dataset`` with its inputs multiplied by ``factor`` (the same dataset for 1).

    The paper's inputs are mean-subtracted but not divided by their standard deviation, so they
    are tens, not ones; ``reproduce`` trains Figures 2 and 3 on standardized inputs × 30
    (``TrainConfig.input_scale``)."""
    if factor == 1:
        return dataset
    if not (factor > 0 and math.isfinite(factor)):
        raise DatasetError(f"input scale must be a positive number, got {factor}")
    return replace(dataset, train_x=dataset.train_x * factor, val_x=dataset.val_x * factor)


def load_dataset(spec: str, *, seed: int = 0, input_shape: tuple[int, ...] | None = None,
                 validation_fraction: float = 0.2) -> Dataset:
    """Return the dataset named by ``spec``, split by ``seed`` and standardized on its train part."""
    kind, _, argument = spec.partition(":")
    entry = DATASET_LOADERS.get(kind)
    if entry is None or (entry.takes_path and not argument):
        hint = did_you_mean(kind, [name.split(":")[0] for name in DATASETS])
        raise DatasetError(f"unknown dataset {spec!r}; valid: {', '.join(DATASETS)}{hint}")
    x, y = entry.load(kind, argument, seed, input_shape)
    if len(x) < 10:
        raise DatasetError(f"dataset {spec!r} has {len(x)} examples; need at least 10")
    order = np.random.default_rng(stream_seed(seed, DATA_STREAM)).permutation(len(x))
    validation = max(1, int(round(validation_fraction * len(x))))
    val_index, train_index = order[:validation], order[validation:]
    train_x, val_x = x[train_index], x[val_index]
    channel_axes = (0,) + tuple(range(2, x.ndim))  # per channel for images, per feature for vectors
    if x.ndim == 2:
        channel_axes = (0, 1)
    mean = train_x.mean(axis=channel_axes, keepdims=True)
    std = train_x.std(axis=channel_axes, keepdims=True) + 1e-8
    return Dataset(spec, torch.from_numpy((train_x - mean) / std), torch.from_numpy(y[train_index]),
                   torch.from_numpy((val_x - mean) / std), torch.from_numpy(y[val_index]), int(y.max()) + 1)
