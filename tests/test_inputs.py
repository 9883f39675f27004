"""Drawn batches: N(0, 1) from the input's own stream, token ids in range for an embedding-fed model."""

import torch
from torch import nn

from initlab.inputs import example_batch, token_vocabulary
from initlab.schemes import INPUT_STREAM, stream_seed


def test_a_float_batch_is_n01_from_its_own_stream():
    batch = example_batch(nn.Linear(4, 2), (4,), 8)
    expected = torch.randn((8, 4), generator=torch.Generator().manual_seed(stream_seed(0, INPUT_STREAM)))
    assert torch.equal(batch, expected) and torch.equal(example_batch(None, (4,), 8), expected)


def test_an_embedding_first_model_gets_token_ids_in_range():
    model = nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 50))
    assert token_vocabulary(model) == 50
    ids = example_batch(model, (16,), 4)
    assert ids.dtype == torch.int64 and ids.shape == (4, 16) and 0 <= int(ids.min()) and int(ids.max()) < 50
    assert token_vocabulary(nn.Sequential(nn.Linear(8, 8), nn.Embedding(5, 8))) is None  # a weight before it
