"""Where a tensor came from: residual sums, branches and normalized segments, read off the autograd graph.

A probe sees ``a + b`` as two tensors. Whether it is a residual sum, and which operand is the
skip, is a fact of the data flow, not of the operand order: the skip is the stream that the
branch was computed from. Both operands descend from a latest common ancestor, the *fork*; the
sum is residual when at least one path from an operand back to the fork passes through a weight
layer (the branch multiplies by weights). ``x + 0.044715·x³`` (GELU-tanh) and the rotary
``q·cos + rot(q)·sin`` have no weight between the fork and the operands: not residual sums.

The graph is walked by decreasing autograd sequence number (the order nodes were created in), so
every node is visited after all of its consumers in the walked region, and the first node
reached from both operands is their latest common ancestor. Only nodes created after the fork
are visited: a sum costs the nodes of its own branch, not the whole network.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

# Accumulate-grad nodes (leaves) carry the largest sequence number; they are the oldest nodes.
_LEAF_ORDER = -1
NODE_BUDGET = 20_000  # nodes visited per question at most; beyond it the answer is "not found"


def _order(node: Any) -> int:
    sequence = node._sequence_nr()
    return _LEAF_ORDER if sequence >= (1 << 62) else sequence


@dataclass(frozen=True)
class Fork:
    """The latest common ancestor of two operands and what lies between it and each of them.

    ``layers_first``/``layers_second``: the weight-layer nodes on the paths from each operand
    back to the fork; ``first_is_fork``/``second_is_fork``: that operand is the
    fork itself, i.e. an ancestor of the other (the skip of a residual sum)."""

    found: bool
    first_is_fork: bool = False
    second_is_fork: bool = False
    layers_first: frozenset = frozenset()
    layers_second: frozenset = frozenset()


def fork(first: Any, second: Any, layer_nodes: dict) -> Fork:
    """Return the ``Fork`` of two autograd nodes; ``layer_nodes`` maps the output node of each
    weight-layer call to its call (a node in it counts as a layer on a path through it)."""
    if first is None or second is None:
        return Fork(False)
    if first is second:
        return Fork(True, True, True)
    # per node: bit 1 reached from first, bit 2 from second; layers seen on the way from each
    reached: dict[Any, int] = {first: 1, second: 2}
    empty = frozenset()
    layers: dict[Any, tuple[frozenset, frozenset]] = {first: (empty, empty), second: (empty, empty)}
    heap = [(-_order(first), 0, first), (-_order(second), 1, second)]
    heapq.heapify(heap)
    counter, visited = 2, 0
    while heap and visited < NODE_BUDGET:
        _, _, node = heapq.heappop(heap)
        visited += 1
        flags = reached[node]
        from_first, from_second = layers[node]
        if flags == 3:
            return Fork(True, node is first, node is second, from_first, from_second)
        if node in layer_nodes:
            from_first = from_first | {node} if flags & 1 else from_first
            from_second = from_second | {node} if flags & 2 else from_second
        for successor, _ in node.next_functions:
            if successor is None:
                continue
            if successor not in reached:
                reached[successor] = flags
                layers[successor] = (from_first, from_second)
                heapq.heappush(heap, (-_order(successor), counter, successor))
                counter += 1
            else:
                old_first, old_second = layers[successor]
                reached[successor] |= flags
                layers[successor] = (old_first | from_first, old_second | from_second)
    return Fork(False)


def nearest_layers(node: Any, layer_nodes: dict, stops: set, budget: int = 256, first: bool = False) -> list:
    """Return the weight-layer nodes that ``node`` was computed from with no weight layer, and
    no node of ``stops`` (residual sums, other normalizations), in between: the layers whose
    output scale reaches ``node`` unchanged by another layer. ``first``: stop at the first one
    (is there a weight layer upstream at all?)."""
    found, seen, stack = [], {node}, [node]
    while stack and len(seen) < budget:
        current = stack.pop()
        if current in layer_nodes:
            found.append(current)
            if first:
                break
            continue
        if current in stops and current is not node:
            continue
        for successor, _ in current.next_functions:
            if successor is not None and successor not in seen:
                seen.add(successor)
                stack.append(successor)
    return found
