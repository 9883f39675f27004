"""The batch a probe or check feeds a model when the user gives only a shape.

A model whose first weight is an ``nn.Embedding`` (a text model) takes token ids, not floats:
``example_batch`` then draws integer ids uniformly in [0, vocabulary), shape (batch, *shape), so
``--input-shape 32`` is a sequence length. Any other model gets N(0, 1) floats, the normalized
input He et al.'s chain assumes (E[x²] = 1). Both come from their own generator stream, so a
seed gives the same batch every run and on every device.
"""

from __future__ import annotations

import torch
from torch import nn

from .schemes import INPUT_STREAM, stream_seed


def token_vocabulary(model: nn.Module) -> int | None:
    """Return the vocabulary size when the model's first module with a weight is an ``nn.Embedding``
    (registration order, the order Hugging Face and most models build in), else None."""
    for module in model.modules():
        if list(module.children()):
            continue
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            return int(module.num_embeddings)
        if any(p.dim() >= 2 for p in module.parameters(recurse=False)):
            return None
    return None


def example_batch(model: nn.Module | None, shape: tuple[int, ...], batch_size: int, seed: int = 0) -> torch.Tensor:
    """Return a batch of ``batch_size`` examples of ``shape``: token ids in range for a model fed by
    an embedding (``token_vocabulary``), N(0, 1) floats otherwise."""
    generator = torch.Generator().manual_seed(stream_seed(seed, INPUT_STREAM))
    vocabulary = token_vocabulary(model) if model is not None else None
    if vocabulary is not None:
        return torch.randint(0, vocabulary, (batch_size, *shape), generator=generator)
    return torch.randn((batch_size, *shape), generator=generator)
