"""Residual sums from the autograd graph: the fork of two operands and the layers between."""

import torch
from torch import nn

from initlab.dataflow import fork, nearest_layers


def test_the_skip_of_a_residual_sum_is_the_fork_and_the_branch_holds_the_layer():
    layer = nn.Linear(4, 4)
    x = torch.randn(2, 4, requires_grad=True)
    skip = x * 1.0
    branch = layer(torch.relu(skip))
    layer_nodes = {branch.grad_fn: 0}
    found = fork(skip.grad_fn, branch.grad_fn, layer_nodes)
    assert found.found and found.first_is_fork and not found.second_is_fork
    assert found.layers_first == frozenset() and found.layers_second == {branch.grad_fn}
    swapped = fork(branch.grad_fn, skip.grad_fn, layer_nodes)  # the order of the operands does not matter
    assert swapped.second_is_fork and swapped.layers_first == {branch.grad_fn}


def test_two_branches_of_one_fork_and_no_common_ancestor():
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    x = torch.randn(2, 4, requires_grad=True)
    stem = x * 2.0
    first, second = a(stem), b(stem)
    found = fork(first.grad_fn, second.grad_fn, {first.grad_fn: 0, second.grad_fn: 1})
    assert found.found and not found.first_is_fork and not found.second_is_fork
    assert found.layers_first == {first.grad_fn} and found.layers_second == {second.grad_fn}
    unrelated = fork((torch.randn(2, requires_grad=True) * 1.0).grad_fn, (torch.randn(2, requires_grad=True) * 1.0)
                     .grad_fn, {})
    assert not unrelated.found and not fork(None, first.grad_fn, {}).found


def test_the_nearest_layers_are_those_whose_scale_reaches_a_node_unchanged():
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    x = torch.randn(2, 4, requires_grad=True)
    ya = a(x)
    yb = b(torch.relu(ya))
    out = torch.tanh(yb) * 3.0
    layer_nodes = {ya.grad_fn: 0, yb.grad_fn: 1}
    assert nearest_layers(out.grad_fn, layer_nodes, set()) == [yb.grad_fn]  # b stands between a and out
    stopped = nearest_layers(out.grad_fn, layer_nodes, {out.grad_fn.next_functions[0][0]})
    assert stopped == []  # a reset (a sum, a normalization) in between: no layer's scale reaches out
    assert nearest_layers((x * 1.0).grad_fn, layer_nodes, set(), first=True) == []  # no weight upstream
