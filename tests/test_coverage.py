"""Weight ops found by their parameter, and the coverage line that counts them."""

import torch
import torch.nn.functional as F
from torch import nn

from initlab.coverage import WEIGHT_OPS, Coverage, coverage, layer_name, weight_call


def test_a_functional_linear_on_a_parameter_is_a_weight_call_and_on_a_plain_tensor_is_not():
    weight = nn.Parameter(torch.randn(3, 4))
    parameters = {weight: "proj.weight"}
    x = torch.randn(2, 4)
    call = weight_call(WEIGHT_OPS[F.linear], (x, weight), {}, parameters)
    assert call is not None and call.weight is weight and call.input_position == 0
    assert weight_call(WEIGHT_OPS[F.linear], (x, torch.randn(3, 4)), {}, parameters) is None


def test_layer_names_come_from_weight_names():
    assert layer_name("h.0.attn.c_attn.weight") == "h.0.attn.c_attn"
    assert layer_name("attn.in_proj_weight") == "attn.in_proj"
    assert layer_name("weight") == "weight" and layer_name("pos_embed") == "pos_embed"


def test_coverage_counts_weights_lookups_and_the_rest_by_name():
    covered, table, token, unused = (nn.Parameter(torch.randn(*shape)) for shape in ((4, 4), (10, 4), (1, 4, 8),
                                                                                      (4, 4)))
    names = {covered: "fc.weight", table: "embed.weight", token: "cls_token", unused: "spare.weight",
             nn.Parameter(torch.randn(4)): "fc.bias"}
    result = coverage(names, covered={covered}, embedded={table})
    assert result == Coverage(("fc",), ("embed", "cls_token"), ("spare",))
    assert result.text() == "1 of 2 weight layers covered (2 embedding tables or tokens, not judged); not covered: spare"
    assert result.to_dict() == {"covered": 1, "total": 2, "embeddings": ["embed", "cls_token"], "uncovered": ["spare"]}
