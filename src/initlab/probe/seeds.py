"""Probing over seeds: one pass per seed, or all seeds stacked side by side in one pass.

``probe`` builds each seed's model (a factory called after ``torch.manual_seed(s)``, or a copy of
the user's module re-initialized with ``apply_init(copy, init, seed=s)``), runs the passes, moves
every seed's statistics to the host in one transfer, and hands the records to ``compare``.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..compare import (build_attention_frame, build_dead_frame, build_frame, build_jacobian_frame, build_norm_frame,
                       build_sum_frame)
from ..models import build_seeded, place
from ..schemes import Scheme, adjacent_factors, network_factor, parse_scheme
from .devices import model_device as _model_device, resolve_device
from .errors import ProbeError
from .passes import DIRECTION, ModelInput, _input_tensors, _map_tensors, _run_pass, probing
from .projections import ProjectionError, jacobian_projections
from .records import _PassLayout, _unpack
from .result import ProbeResult
from .stacking import StackingError, repeat_input, stack_models


def _nominal(record: _PassLayout, modules: list[nn.Module], model: nn.Module, scheme: Scheme) -> None:
    """Fill the scheme's nominal Var[w] and E[b²] for every call, slopes as ``apply_init`` chose them."""
    factors = adjacent_factors(model)
    nan = float("nan")  # a weight op outside a Conv/Linear module: apply_init does not draw it
    record.nominal_weight_variance = np.array([
        scheme.weight_variance(tuple(m.weight.shape), g.fan_in, g.fan_out,
                               network_factor=network_factor(scheme, *factors[m]))
        if m is not None and m in factors else nan for m, g in zip(modules, record.geometries)])
    record.nominal_bias_second_moment = np.array([
        scheme.bias_variance(g.fan_in, m.bias is not None) if m is not None else nan
        for m, g in zip(modules, record.geometries)])


@contextmanager
def _buffers_restored(model: nn.Module) -> Iterator[None]:
    """Restore the model's buffers on exit (a train-mode normalization updates its running statistics).

    The plain form: ``saved = {name: b.clone()}`` on entry, ``b.copy_(saved[name])`` on exit. Here
    each device's buffers are cloned by one ``_foreach_clone`` and copied back by one
    ``_foreach_copy_``, the multi-tensor kernels optimizers use: a clone and a copy per buffer were
    about 320 of a ResNet-50 probe's 1300 device ops (kernel launches on a GPU). On this project's
    CPU the pair alone takes 1.2–2.1 against 1.6–2.5 ms there, no measurable change in a probe.
    Torch before ``_foreach_clone`` clones one by one; a buffer that is not a dense strided tensor
    is cloned and copied on its own."""
    entry = dict(model.named_buffers())
    by_device: dict[torch.device, list[str]] = {}  # the dense strided buffers of each device
    for name, buffer in entry.items():
        if buffer.layout == torch.strided:
            by_device.setdefault(buffer.device, []).append(name)
    dense = [(names, _clones([entry[name].detach() for name in names])) for names in by_device.values()]
    others = {name: buffer.detach().clone() for name, buffer in entry.items() if buffer.layout != torch.strided}
    try:
        yield
    finally:
        now = dict(model.named_buffers())
        with torch.no_grad():
            for names, values in dense:
                pairs = [(now[name], value) for name, value in zip(names, values) if name in now]
                if pairs:
                    torch._foreach_copy_([target for target, _ in pairs], [value for _, value in pairs])
            for name, value in others.items():
                if name in now:
                    now[name].copy_(value)


def _clones(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """A copy of each dense tensor: one multi-tensor ``_foreach_clone`` where torch has it."""
    clone = getattr(torch, "_foreach_clone", None)
    return list(clone(tensors)) if clone is not None else [t.clone() for t in tensors]


def _probe_one(model: nn.Module, example_input: ModelInput, seed: int, scheme: Scheme | None,
               elementwise_variances: bool = False) -> tuple[torch.Tensor, _PassLayout]:
    """Probe one model once; return its statistics (still on the device) and their layout."""
    with _buffers_restored(model):
        device = _model_device(model)
        flat, layout, modules_by_call = _run_pass(model, _map_tensors(example_input, lambda t: t.to(device)), seed,
                                                  elementwise_variances=elementwise_variances)
    if scheme is not None:
        _nominal(layout, modules_by_call, model, scheme)
    return flat, layout


def _projected(model: nn.Module, example_input: ModelInput, seed: int, projections: int) -> torch.Tensor | str:
    """Return the Jacobian's random projections of one seed's model (on its device), or why there are none."""
    with _buffers_restored(model):
        device = _model_device(model)
        try:
            return jacobian_projections(model, _map_tensors(example_input, lambda t: t.to(device)), projections, seed)
        except ProjectionError as error:
            return str(error)


def _probe_stacked(instances: list[nn.Module], example_input: ModelInput, seeds: list[int],
                   scheme: Scheme | None, elementwise_variances: bool = False) -> tuple[torch.Tensor, _PassLayout]:
    """Probe S seeds' models in one pass of them stacked; return their statistics, one row per
    seed (still on the device), and the layout every row shares."""
    if not isinstance(example_input, torch.Tensor) or example_input.dim() < 2:
        raise StackingError("stacked seeds take one input tensor of shape (N, C, ...)")
    network, references = stack_models(instances)
    device = _model_device(instances[0])
    try:
        flat, layout, modules_by_call = _run_pass(network, repeat_input(example_input.to(device), len(seeds)),
                                                  seeds[0], seeds, references, elementwise_variances)
    except ProbeError:
        # The stacked net's shapes are S times one seed's: one seed's pass on the same input raises
        # the error in the model's own terms (a wrong input shape), as the sequential probe would.
        _probe_one(instances[0], example_input, seeds[0], None)
        raise
    if scheme is not None:
        _nominal(layout, modules_by_call, instances[0], scheme)
    return flat, layout


def _resolve_input(example_input: Any) -> ModelInput:
    """Return the model input: a tensor, a tuple/list (positional) or dict (keyword) of tensors,
    or what a zero-argument input factory returns."""
    if callable(example_input) and not isinstance(example_input, torch.Tensor):
        try:
            example_input = example_input()
        except Exception as error:
            raise ProbeError(f"the input factory raised {type(error).__name__}: {error}") from error
    tensors = _input_tensors(example_input)
    if not tensors or not isinstance(example_input, (torch.Tensor, tuple, list, dict)):
        raise ProbeError("example_input must be a tensor, a tuple/list or dict of tensors, or a factory returning one; "
                         f"got {type(example_input).__name__}")
    return example_input


def probe(model: nn.Module | Callable[[], nn.Module], example_input: ModelInput | Callable[[], ModelInput], *,
          init: str | Scheme | None = None, seeds: int | Sequence[int] = 1,
          device: str | torch.device | None = None, config: dict | None = None,
          progress: Callable[[int, int], None] | None = None, batched: bool | None = None,
          jacobian_projections: int = 0, elementwise_variances: bool = False) -> "ProbeResult":
    """Return per-layer activation and gradient statistics of ``model`` on ``example_input``.

    ``model`` is an ``nn.Module`` or a zero-argument factory. With no other argument the module
    is probed as it is, its own weights, one pass. ``init`` (a scheme spec such as ``"kaiming"``)
    re-initializes a copy per seed with ``apply_init(copy, init, seed=s)``; a factory is called
    once per seed after ``torch.manual_seed(s)``. ``seeds`` is a count (0..N−1) or a list; the
    seed also draws the output direction. ``device``: ``"auto"``, ``"cpu"``, ``"cuda"``; by default
    the model's own. The user's module, its buffers and the global RNG state are left as found.
    ``progress(done, total)`` is called after each seed. ``config`` entries are added to the
    result's configuration.

    ``batched``: probe all seeds in one pass of the seeds stacked side by side
    (``stacking.stack_models``; ``nn.Sequential`` nets of Conv/Linear/elementwise layers, one
    input tensor), with the same numbers as one pass per seed. ``None`` (default): batched on a
    GPU when the model stacks, sequential on a CPU (where stacking does not pay); ``True``:
    batched or a ``ProbeError`` saying why not; ``False``: one pass per seed.

    ``jacobian_projections``: with k > 0, also estimate the spectrum of the input–output Jacobian
    from k random projections per seed (``probe.projections``: k backward and k forward-mode passes
    more), in ``ProbeResult.jacobian`` beside the closed form of ``conditioning``.

    ``elementwise_variances``: also fill ``output_variance``, ``grad_output_variance`` and
    ``grad_input_variance`` (Var = E[x²] − E[x]² of each layer's output and gradients; NaN
    otherwise). No verdict needs them; on a CPU each costs one more read of the tensor.
    """
    scheme = parse_scheme(init) if init is not None else None
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ProbeError(f"seeds must be at least 1, got {seeds!r}")
    if isinstance(jacobian_projections, bool) or not isinstance(jacobian_projections, int) or jacobian_projections < 0:
        raise ProbeError(f"jacobian_projections must be a whole number ≥ 0, got {jacobian_projections!r}")
    target = resolve_device(device)
    is_factory = not isinstance(model, nn.Module)
    if is_factory and not callable(model):
        raise ProbeError(f"model must be an nn.Module or a factory returning one, got {type(model).__name__}")
    device_used = target if target is not None else _model_device(model) if not is_factory else torch.device("cpu")
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    passes: list[tuple[torch.Tensor, _PassLayout, list[int]]] = []  # (statistics, layout, the seeds of its rows)
    with torch.random.fork_rng(devices=cuda_devices), probing():
        example_input = _resolve_input(example_input)

        def instance_for(seed: int) -> nn.Module:
            if is_factory:
                return build_seeded(model, seed, device=target, init=scheme)
            if scheme is None and (target is None or target == _model_device(model)):
                return model  # probed in place: nothing is written but buffers, which are restored
            return place(copy.deepcopy(model), seed, device=target, init=scheme)

        instances: list[nn.Module] = []
        projected: dict[int, torch.Tensor | str] = {}  # each seed's Jacobian projections, where asked for
        if batched or (batched is None and len(seed_list) > 1 and device_used.type == "cuda"):
            instances = [instance_for(seed) for seed in seed_list]
            try:
                passes = [(*_probe_stacked(instances, example_input, seed_list, scheme, elementwise_variances),
                           seed_list)]
            except StackingError as error:
                if batched:
                    raise ProbeError(f"batched seeds: {error}; probe one pass per seed (batched=False)") from None
            for seed, instance in zip(seed_list, instances) if passes and jacobian_projections else ():
                projected[seed] = _projected(instance, example_input, seed, jacobian_projections)
            if passes and progress is not None:
                progress(len(seed_list), len(seed_list))
        if not passes:  # one pass per seed, reusing the instances built for a stacking that did not apply
            for position, seed in enumerate(seed_list):
                instance = instances[position] if instances else instance_for(seed)
                passes.append((*_probe_one(instance, example_input, seed, scheme, elementwise_variances), [seed]))
                if jacobian_projections:
                    projected[seed] = _projected(instance, example_input, seed, jacobian_projections)
                if progress is not None:
                    progress(len(passes), len(seed_list))
    # every seed's statistics, and the Jacobian's projections, cross to the host in one transfer
    measured = [p for p in projected.values() if isinstance(p, torch.Tensor)]
    device_of_pass = passes[0][0].device
    dtype = torch.float64 if measured else passes[0][0].dtype  # the projections' sums need float64's range
    host = torch.cat([flat.reshape(-1).to(device=device_of_pass, dtype=dtype) for flat, _, _ in passes]
                     + [p.reshape(-1).to(device_of_pass) for p in measured]).cpu().double().numpy()
    statistics_size = sum(layout.size * len(seeds_of_pass) for _, layout, seeds_of_pass in passes)
    projections_host, start = {}, statistics_size
    for seed, value in projected.items():
        if isinstance(value, str):
            projections_host[seed] = value
        else:
            projections_host[seed] = host[start:start + value.numel()].reshape(value.shape)
            start += value.numel()
    records, offset = [], 0
    for _, layout, seeds_of_pass in passes:
        end = offset + layout.size * len(seeds_of_pass)
        records += _unpack(host[offset:end].reshape(len(seeds_of_pass), layout.size), layout, seeds_of_pass)
        offset = end
    first = _input_tensors(example_input)[0]
    info = {"init": str(scheme) if scheme is not None else "model's own", "seeds": seed_list,
            "batch_size": int(first.shape[0]) if first.dim() else 1, "input_shape": list(first.shape[1:]), "device": str(device_used), "direction": DIRECTION}
    info.update(config or {})
    if jacobian_projections:
        info["jacobian_projections"] = jacobian_projections
    if elementwise_variances:
        info["elementwise_variances"] = True
    frame = build_frame(records)
    jacobian = build_jacobian_frame(frame, projections_host, info["init"], info["batch_size"])
    return ProbeResult(frame, info, build_sum_frame(records), build_dead_frame(records), build_norm_frame(records),
                       records[0].coverage, build_attention_frame(records), jacobian)


