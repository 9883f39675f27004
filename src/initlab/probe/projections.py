"""Random projections of the input–output Jacobian J: vector-Jacobian and Jacobian-vector products,
no full Jacobian.

For r ~ N(0, I) at the output, w = Jᵀr (a backward pass) and u = J·w (a forward-mode pass) give
E‖w‖² = tr(JJᵀ) and E‖u‖² = tr((JJᵀ)²) (Hutchinson's estimator of tr(A) and tr(A²) for
A = JJᵀ), from which ``conditioning.jacobian_spectrum`` takes the mean squared singular value and
the spread of the spectrum. The input is the model's floating-point input; a model fed integer
ids (a transformer) is differentiated from the output of the embedding that reads the ids.
Every forward pass of one estimate draws the same dropout masks; the reductions stay on the
device until the probe's one transfer.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import torch
from torch import nn
from torch.autograd import forward_ad
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..schemes import DROPOUT_STREAM, PROJECTION_STREAM, stream_seed
from .passes import ModelInput, _call_model, _input_tensors, _map_tensors, _output_tensors

class ProjectionError(RuntimeError):
    """The Jacobian could not be projected (an op without a forward-mode derivative, no float input)."""


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def jacobian_projections(model: nn.Module, example_input: ModelInput, projections: int, seed: int) -> torch.Tensor:
    """Return a (projections, 3) float64 device tensor: per projection ‖Jᵀr‖², ‖JJᵀr‖² and the number of
    output elements, for r ~ N(0, I) drawn from ``seed``.

    Raises ``ProjectionError`` with the reason where the model cannot be projected. The caller
    restores buffers (a train-mode normalization updates its running statistics on every pass)."""
    inputs = _map_tensors(example_input, lambda t: t.detach().clone())
    float_inputs = [t for t in _input_tensors(inputs) if t.is_floating_point()]
    # the ids' storage: a model may look up a view of them (GPT-2's input_ids.view(-1, length))
    id_storages = {t.untyped_storage().data_ptr() for t in _input_tensors(inputs)
                   if not (t.is_floating_point() or t.is_complex())}
    embeddings = [] if float_inputs else [m for m in model.modules() if isinstance(m, nn.Embedding)]
    if not float_inputs and not embeddings:
        raise ProjectionError("the model has no floating-point input and no nn.Embedding to differentiate from")
    dropout_seed = stream_seed(seed, DROPOUT_STREAM)
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []

    def run(tangents: list[torch.Tensor] | None) -> tuple[Any, list[torch.Tensor]]:
        """One forward from the same dropout draw; returns the output and the differentiated inputs
        (dual tensors carrying ``tangents`` when given)."""
        starts: list[torch.Tensor] = []

        def embedded(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
            if not (args and isinstance(args[0], torch.Tensor) and args[0].untyped_storage().data_ptr() in id_storages):
                return None  # position or type embeddings: not a function of the input
            if tangents is not None:
                output = forward_ad.make_dual(output, tangents[len(starts)])
            starts.append(output)
            return output

        with ExitStack() as stack, torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(dropout_seed)
            # the fused attention kernels have no forward-mode derivative; the math one is composed of ops that do
            stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
            handles = [m.register_forward_hook(embedded) for m in embeddings]
            stack.callback(lambda: [h.remove() for h in handles])
            if float_inputs:
                position = iter(range(len(float_inputs)))
                fed = _map_tensors(inputs, lambda t: (forward_ad.make_dual(t, tangents[next(position)])
                                                      if tangents is not None else t.requires_grad_(True))
                                   if t.is_floating_point() else t)
                starts = [t for t in _input_tensors(fed) if t.is_floating_point()]
            else:
                fed = inputs
            output = _call_model(model, fed)
        return output, starts

    try:
        with torch.enable_grad():
            output, starts = run(None)
            outputs = [t for t in _output_tensors(output) if t.requires_grad]
            if not outputs or not starts:
                raise ProjectionError("the model's output does not depend on its input through autograd")
            generator = torch.Generator().manual_seed(stream_seed(seed, PROJECTION_STREAM))
            rows = []
            count = torch.tensor(float(sum(t.numel() for t in outputs)), device=outputs[0].device, dtype=torch.float64)
            for _ in range(projections):
                directions = [torch.randn(t.shape, generator=generator).to(device=t.device, dtype=t.dtype)
                              for t in outputs]
                pulled = torch.autograd.grad(outputs, starts, directions, retain_graph=True, allow_unused=True)
                pulled = [torch.zeros_like(s) if p is None else p.detach() for s, p in zip(starts, pulled)]
                with forward_ad.dual_level():
                    dual_output, _ = run(pulled)
                    pushed = [forward_ad.unpack_dual(t).tangent for t in _output_tensors(dual_output)
                              if t.requires_grad]
                pushed = [torch.zeros_like(t) if p is None else p.detach() for t, p in zip(outputs, pushed)]
                # in float64: ‖JJᵀr‖² of a vanishing net (m₁ ~ 1e-30) underflows float32
                rows.append(torch.stack([_flat(pulled).double().square().sum(), _flat(pushed).double().square().sum(),
                                         count]))
    except ProjectionError:
        raise
    except (RuntimeError, NotImplementedError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ProjectionError(f"forward-mode differentiation failed: {first_line}") from error
    return torch.stack(rows)
