"""Watch signal propagation during training: the probe's statistics from the training steps' own
forward and backward passes, every N steps, in any training loop.

``watch(model, every=100)`` puts a forward pre-hook and a forward hook (``always_call``: it runs
when the forward raises too) on the model. Every forward in training mode with gradients on counts
as a step; on steps 0, N, 2N, … the model's own forward runs under the probe's capture
(``probe.capture._Recorder``: the same hooks and on-device reductions as ``initlab.probe``), and
the tensor hooks it leaves on that forward's activations
record the gradients when the training loop runs its own backward. A hook on the covered weights'
gradients takes their statistics when the backward reaches them, before the optimizer changes the
weights. Nothing runs between watched steps but a counter, and nothing crosses to the host until
``frame()`` asks: then every watched step's reductions move in one transfer.

The backward is the loop's own loss gradient, not the probe's random direction, so gradient
statistics are the training signal's. ``remove()`` (or leaving the ``with`` block, also after an
exception) removes every hook. The hooks are plain functions that act on the watched model only,
so a ``copy.deepcopy`` of it (an EMA copy, a checkpoint) is not watched and copies no watch state.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from .compare import build_attention_frame, build_dead_frame, build_frame, build_norm_frame, build_sum_frame
from .check import DEAD_WARNING, CheckReport, report_from_probe
from .probe.capture import _Recorder, _Tracker
from .probe.passes import _in_degrees, _input_tensors, _output_tensors, finished_layout, probing_now
from .probe.records import _recipes_of_pass, _unpack

_WATCHED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()  # models with a watch attached


class WatchError(ValueError):
    """A watch that cannot be set up (a bad interval, a model watched twice)."""


@dataclass
class _WatchedStep:
    """One watched step between its forward and the host transfer."""

    step: int
    recorder: _Recorder
    in_degree: Any
    gradient_hook: Any = None
    recipes: Any = None  # taken when the backward has reached the weights


@dataclass
class Watch:
    """A handle on a watched model: ``frame()``, ``dead_units()``, ``findings()``, ``remove()``."""

    model: nn.Module
    every: int
    steps_seen: int = 0
    _handles: list = field(default_factory=list)
    _capturing: tuple | None = None  # (step, recorder, tracker) while a watched forward runs
    _pending: list[_WatchedStep] = field(default_factory=list)
    _done: list[tuple[int, torch.Tensor, Any]] = field(default_factory=list)  # (step, flat on device, layout)
    _frames: list[pd.DataFrame] = field(default_factory=list)
    _dead: list[pd.DataFrame] = field(default_factory=list)
    _steps: dict = field(default_factory=dict)  # step -> (records, batch size): what ``report`` needs
    _batch_sizes: dict = field(default_factory=dict)

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def remove(self) -> None:
        """Remove every hook; what was watched stays readable."""
        for handle in self._handles:
            handle.remove()
        if self._handles:
            _WATCHED.discard(self.model)
        self._handles = []
        for watched in self._pending:
            if watched.gradient_hook is not None:
                watched.gradient_hook.remove()
            watched.recorder.remove()
        self._finish_pending()

    def frame(self) -> pd.DataFrame:
        """Return the tidy frame over steps: one row per watched step × layer call, the probe's
        columns (``compare.build_frame``, seed 0) with ``step``."""
        self._finish_pending(keep_unfinished=True)
        self._transfer()
        if not self._frames:
            return pd.DataFrame()
        return pd.concat(self._frames, ignore_index=True)

    def dead_units(self) -> pd.DataFrame:
        """Return one row per watched step × ReLU call: units and the fraction dead on the batch."""
        self.frame()
        return pd.concat(self._dead, ignore_index=True) if self._dead else pd.DataFrame(
            columns=["step", "name", "units", "dead_fraction"])

    def report(self, step: int = 0, direction: str = "forward") -> CheckReport:
        """Return the ``CheckReport`` of one watched step (by default the first: the init as the loop
        met it, on its first real batch, with the loss's own gradient), as ``initlab.check`` reads
        a probe: verdicts and named findings with their fixes."""
        from .probe.result import ProbeResult
        self.frame()
        if step not in self._steps:
            raise WatchError(f"step {step} was not watched; watched steps: {sorted(self._steps) or 'none yet'}")
        records, batch = self._steps[step]
        config = {"init": "model's own", "seeds": [0], "batch_size": batch, "direction": "the training loss's gradient",
                  "step": step}
        result = ProbeResult(build_frame(records), config, build_sum_frame(records), build_dead_frame(records),
                             build_norm_frame(records), records[0].coverage, build_attention_frame(records))
        return report_from_probe(result, direction, "as-is")

    def findings(self) -> list[dict]:
        """Return what went wrong first, each a dict (kind, step, layer, value, message): per direction
        the first watched step, and its first layer, whose chain gain leaves He's healthy interval
        (``verdicts.layer_summary``), the first ReLU with more than 60 % of its units dead, the first
        PReLU slope beyond 1."""
        return watch_findings(self.frame(), self.dead_units())

    # -- the wrapper ------------------------------------------------------------------------------

    def _start(self) -> "Watch":
        if self.model in _WATCHED:
            raise WatchError("this model is already watched; remove() the first watch")
        _WATCHED.add(self.model)
        this = weakref.ref(self)

        def before(module: nn.Module, args: tuple, kwargs: dict) -> None:
            watch_ = this()
            if watch_ is not None and module is watch_.model:
                watch_._before(args, kwargs)

        def after(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            watch_ = this()
            if watch_ is not None and module is watch_.model:
                watch_._after(output)

        self._handles = [self.model.register_forward_pre_hook(before, with_kwargs=True),
                         self.model.register_forward_hook(after, with_kwargs=True, always_call=True)]
        return self

    def _before(self, args: tuple, kwargs: dict) -> None:
        if self._capturing is not None or not self.model.training or not torch.is_grad_enabled() or _capturing_now():
            return
        step = self.steps_seen
        self.steps_seen += 1
        if step % self.every:
            return
        self._finish_pending()  # the previous watched step's backward is over by now
        recorder = _Recorder(self.model)
        tensors = _input_tensors((args, kwargs))
        recorder.input_storages = {t.untyped_storage().data_ptr() for t in tensors if t.is_floating_point()}
        self._batch_sizes[step] = int(tensors[0].shape[0]) if tensors and tensors[0].dim() else 1
        tracker = _Tracker(recorder)
        tracker.__enter__()
        self._capturing = (step, recorder, tracker)

    def _after(self, output: Any) -> None:
        if self._capturing is None:
            return
        step, recorder, tracker = self._capturing
        self._capturing = None
        tracker.__exit__(None, None, None)
        for handle in recorder.handles:  # the module hooks serve the forward only
            handle.remove()
        recorder.handles.clear()
        if output is None or not recorder.calls:  # the forward raised, or ran no Conv/Linear: nothing to keep
            recorder.remove()
            return
        outputs = [t for t in _output_tensors(output) if t.requires_grad]
        watched = _WatchedStep(step, recorder, _in_degrees([t.grad_fn for t in outputs]))
        recorder.end_forward(watched.in_degree)
        weights = list(dict.fromkeys(c.weight for c in recorder.calls if c.weight.requires_grad))
        if outputs and weights:
            watched.gradient_hook = torch.autograd.graph.register_multi_grad_hook(
                weights, lambda grads, w=watched, ws=weights: self._on_weight_gradients(w, ws, grads))
        self._pending.append(watched)

    def _on_weight_gradients(self, watched: _WatchedStep, weights: list, grads: Any) -> None:
        """The backward has computed the covered weights' gradients: take the weight and gradient
        statistics now, while the weights are those of the forward (the optimizer has not run)."""
        recorder = watched.recorder
        weight_grads = {id(w): g for w, g in zip(weights, grads) if g is not None}
        with torch.no_grad():
            watched.recipes = _recipes_of_pass(recorder.calls, recorder.sums, recorder.dead, recorder.norms,
                                               weight_grads, recorder.raw, 1, recorder.attention)
        watched.gradient_hook.remove()
        watched.gradient_hook = None

    def _finish_pending(self, keep_unfinished: bool = False) -> None:
        """Concatenate the reductions of watched steps whose backward is over (on the device)."""
        still = []
        for watched in self._pending:
            if keep_unfinished and watched.recipes is None and watched.gradient_hook is not None:
                still.append(watched)  # frame() between a forward and its backward: later
                continue
            recorder = watched.recorder
            if watched.gradient_hook is not None:  # no backward reached the weights: forward statistics only
                watched.gradient_hook.remove()
            if watched.recipes is None:
                with torch.no_grad():
                    watched.recipes = _recipes_of_pass(recorder.calls, recorder.sums, recorder.dead, recorder.norms,
                                                       {}, recorder.raw, 1, recorder.attention)
            layout = finished_layout(recorder, watched.in_degree, watched.recipes)
            self._done.append((watched.step, recorder.raw.flat(), layout))
            recorder.remove()
        self._pending = still

    def _transfer(self) -> None:
        """Move every finished step's reductions to the host in one transfer and build their frames."""
        if not self._done:
            return
        flats = [flat.reshape(-1) for _, flat, _ in self._done]
        device = flats[0].device
        host = torch.cat([flat.to(device) for flat in flats]).cpu().double().numpy()
        offset = 0
        for step, flat, layout in self._done:
            rows = host[offset:offset + flat.numel()].reshape(1, -1)
            offset += flat.numel()
            records = _unpack(rows, layout, [0])
            self._steps[step] = (records, self._batch_sizes.pop(step, 1))
            self._frames.append(build_frame(records).assign(step=step))
            self._dead.append(build_dead_frame(records).assign(step=step))
        self._done = []


def _capturing_now() -> bool:
    """True inside a probe's passes (its statistics, its Jacobian projections) or another watch's
    capture: an ``initlab.check`` of a watched model is not a training step."""
    return probing_now() or any(isinstance(mode, _Tracker) for mode in torch.overrides._get_current_function_mode_stack())


def watch_findings(frame: pd.DataFrame, dead: pd.DataFrame) -> list[dict]:
    """Return the first step at which each thing went wrong in a watch's frames (see ``Watch.findings``)."""
    from .verdicts import layer_summary
    found: list[dict] = []
    if frame.empty:
        return found
    summaries = {step: layer_summary(step_frame) for step, step_frame in frame.groupby("step", sort=True)}
    for direction in ("forward", "backward"):
        for step, summary in summaries.items():
            off = summary[~summary[f"verdict_{direction}"].isin(["healthy"])]
            if len(off):  # the first layer, in call order, whose chain gain left He's healthy interval
                row = off.iloc[0]
                verdict, gain = row[f"verdict_{direction}"], 10.0 ** row[f"log10_{direction}_gain_layers"]
                found.append({"kind": f"{direction}-{verdict}", "step": int(step), "layer": row["name"], "value": gain,
                              "message": f"step {step}: the {direction} signal is {verdict} from {row['name']!r} on, "
                                         f"chain gain {gain:.3g} (the first watched step and layer off He's healthy "
                                         "interval)"})
                break
    over = dead[dead["dead_fraction"] > DEAD_WARNING].sort_values(["step"]) if not dead.empty else dead
    if len(over):
        row = over.iloc[0]
        found.append({"kind": "dying-relu", "step": int(row["step"]), "layer": row["name"],
                      "value": float(row["dead_fraction"]),
                      "message": f"step {int(row['step'])}: {row['dead_fraction']:.0%} of the units of ReLU "
                                 f"{row['name']!r} are dead on the batch (more than {DEAD_WARNING:.0%})"})
    slopes = frame[frame["slope"].abs() > 1].sort_values(["step", "index"])
    if len(slopes):
        row = slopes.iloc[0]
        found.append({"kind": "prelu-slope", "step": int(row["step"]), "layer": row["name"],
                      "value": float(row["slope"]),
                      "message": f"step {int(row['step'])}: the rectifier after {row['name']!r} has slope "
                                 f"{row['slope']:.3g}, beyond 1 (it no longer rectifies)"})
    return sorted(found, key=lambda finding: finding["step"])


def watch(model: nn.Module, every: int = 100) -> Watch:
    """Return a ``Watch`` recording the probe's per-layer statistics of ``model``'s own training
    steps, every ``every``-th forward in training mode (steps 0, every, 2·every, …), from that
    step's own forward and the loop's own backward: no extra pass. Use it as a context manager or
    call ``remove()``; ``frame()`` gives one row per watched step × layer call.

        with initlab.watch(model, every=100) as watched:
            for x, y in loader:
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(); loss.backward(); optimizer.step()
        watched.frame()     # step, name, var_y, grad_var, slope, ... per watched step and layer
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise WatchError(f"every must be a whole number ≥ 1, got {every!r}")
    if not isinstance(model, nn.Module):
        raise WatchError(f"watch takes an nn.Module, got {type(model).__name__}")
    return Watch(model, every)._start()
