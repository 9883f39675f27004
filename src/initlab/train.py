"""Short training runs that confirm convergence or stalling (paper §2.2, Figures 2 and 3).

The recipe follows the paper where it makes sense at small scale: SGD with momentum 0.9, weight
decay on Conv/Linear weights only (never on PReLU slopes, nor biases), a step (÷10 at 50 % and
75 % of the run) or cosine learning-rate schedule. A run is deterministic for a given seed on the
CPU: the split, the init and every epoch's data order come from seeded generators, so a run
resumed from its checkpoint ends exactly where an uninterrupted one does.

Under ``torchrun`` (``torch.distributed`` initialized) the model is wrapped in
DistributedDataParallel; each optimizer step takes the same global batch as a single process,
split evenly over the ranks, so the result matches a single-process run to float tolerance.
Checkpoints are written by rank 0 only.
"""

from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn

from .activations import no_decay_param_groups
from .data import Dataset, scaled_inputs
from .files import BackgroundWriter, atomic_write, json_records, json_value
from .models import build_seeded
from .schemes import stream_seed
from .torchrun import launched_as_worker
from .watch import watch, watch_findings

SHUFFLE_STREAM = 1000  # + epoch

# -- verdict rules: the one place where they and their thresholds live ----------------------

STALL_LOSS_FRACTION = 0.95  # stalled: every epoch's training loss ≥ 0.95·ln(C)
DIVERGE_LOSS_FACTOR = 3.0  # diverged: a non-finite epoch loss, or one above 3·ln(C)
CONVERGED_ERROR_FRACTION = 0.5  # converged: final validation error ≤ 0.5 × chance error (1 − 1/C)

VERDICT_RULES = (
    f"diverged: an epoch's training loss is non-finite or above {DIVERGE_LOSS_FACTOR:g}·ln(C); "
    f"stalled: every epoch's training loss stays ≥ {STALL_LOSS_FRACTION:g}·ln(C) (chance level); "
    f"converged: final validation error ≤ {CONVERGED_ERROR_FRACTION:g} × chance error (1 − 1/C); "
    "undecided: none of these"
)


def verdict(history: pd.DataFrame, num_classes: int) -> tuple[str, str]:
    """Return (verdict, reason) of a run from its per-epoch history (see ``VERDICT_RULES``)."""
    chance_loss = math.log(num_classes)
    chance_error = 1.0 - 1.0 / num_classes
    if history.empty:
        return "undecided", "no completed epoch"
    losses = history["train_loss"].to_numpy(dtype=float)
    if not np.all(np.isfinite(losses)) or np.any(losses > DIVERGE_LOSS_FACTOR * chance_loss):
        worst = losses[~np.isfinite(losses)][0] if not np.all(np.isfinite(losses)) else losses.max()
        return "diverged", f"training loss reached {worst:.4g} (chance ln(C) = {chance_loss:.3f})"
    if np.all(losses >= STALL_LOSS_FRACTION * chance_loss):
        return "stalled", (f"training loss never went below {losses.min():.3f} ≥ {STALL_LOSS_FRACTION:g}·ln(C) = "
                           f"{STALL_LOSS_FRACTION * chance_loss:.3f} in {len(losses)} epochs")
    final_error = float(history["val_error"].iloc[-1])
    if final_error <= CONVERGED_ERROR_FRACTION * chance_error:
        return "converged", (f"final validation error {final_error:.3f} ≤ {CONVERGED_ERROR_FRACTION:g} × chance "
                             f"error {chance_error:.3f}")
    return "undecided", (f"loss left chance level but validation error {final_error:.3f} > "
                         f"{CONVERGED_ERROR_FRACTION * chance_error:.3f}")


# -- configuration and results ----------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a run; stored in its checkpoint and checked on resume."""

    epochs: int = 30
    lr: float = 0.02
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step"  # step | cosine | constant
    seed: int = 0
    steps: int | None = None  # a budget of optimizer steps instead of whole epochs (the last epoch may be partial)
    input_scale: float = 1.0  # the standardized inputs × this (the paper's pixels are not divided by their std)

    def __post_init__(self) -> None:
        if self.schedule not in ("step", "cosine", "constant"):
            raise ValueError(f"schedule must be step, cosine or constant, got {self.schedule!r}")
        for name, low in (("epochs", 1), ("batch_size", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be at least {low}, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not (self.input_scale > 0 and math.isfinite(self.input_scale)):
            raise ValueError(f"input_scale must be a positive number, got {self.input_scale}")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ValueError("momentum must be in [0, 1) and weight_decay ≥ 0")


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """Return the learning rate at optimizer ``step`` (0-based) of ``total_steps``.

    step: lr ÷ 10 at 50 % and again at 75 % of the run (the paper divides three times on
    plateaus over ~80 epochs); cosine: ½·lr·(1 + cos(π·step/total)); constant: lr.
    """
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "cosine":
        return 0.5 * config.lr * (1.0 + math.cos(math.pi * step / total_steps))
    progress = step / total_steps
    return config.lr * (0.1 if progress >= 0.5 else 1.0) * (0.1 if progress >= 0.75 else 1.0)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """Return SGD with momentum, weight decay on Conv/Linear weights only (paper §2.1, §3)."""
    return torch.optim.SGD(no_decay_param_groups(model, config.weight_decay), lr=config.lr,
                           momentum=config.momentum)


@dataclass
class TrainResult:
    """History (one row per epoch), learned PReLU slopes over training, and the verdict."""

    history: pd.DataFrame
    slopes: pd.DataFrame
    verdict: str
    reason: str
    config: dict = field(default_factory=dict)
    watch: pd.DataFrame = field(default_factory=pd.DataFrame)  # per watched step × layer (``watch_every``)
    watch_findings: list = field(default_factory=list)  # the first step each thing went wrong

    @property
    def final_train_loss(self) -> float:
        return float(self.history["train_loss"].iloc[-1]) if len(self.history) else float("nan")

    @property
    def final_val_error(self) -> float:
        return float(self.history["val_error"].iloc[-1]) if len(self.history) else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict: verdict, rule, history, final numbers, slopes, config."""
        return {
            "verdict": self.verdict, "reason": self.reason, "rules": VERDICT_RULES,
            "final_train_loss": json_value(self.final_train_loss), "final_val_error": json_value(self.final_val_error),
            "history": json_records(self.history),
            "slopes": json_records(self.slopes),
            "config": self.config,
            **({"watch_findings": self.watch_findings} if len(self.watch) else {}),
        }


# -- the loop -----------------------------------------------------------------------------------


def _slope_rows(model: nn.Module, epoch: int) -> tuple[list[dict], list[torch.Tensor]]:
    """Return row stubs and on-device (mean, std, min, max) of every PReLU's slopes."""
    rows, values = [], []
    prelus = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.PReLU)]
    for position, (name, module) in enumerate(prelus):
        weight = module.weight.detach().float()
        rows.append({"epoch": epoch, "layer": name, "position": position, "channels": weight.numel()})
        values.append(torch.stack([weight.mean(), weight.std(correction=0), weight.min(), weight.max()]))
    return rows, values


def _finish_slopes(rows: list[dict], values: list[torch.Tensor]) -> list[dict]:
    if not rows:
        return []
    numbers = torch.stack(values).cpu().tolist()  # one transfer per epoch
    return [dict(row, slope_mean=v[0], slope_std=v[1], slope_min=v[2], slope_max=v[3])
            for row, v in zip(rows, numbers)]


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (summed loss, error count) on device."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    errors = torch.zeros((), device=x.device)
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(x[start:start + batch_size])
            target = y[start:start + batch_size]
            loss_sum += nn.functional.cross_entropy(logits.float(), target, reduction="sum")
            errors += (logits.argmax(dim=1) != target).sum()
    model.train(was_training)
    return loss_sum, errors


def _host_snapshot(value: Any, devices: set[torch.device]) -> Any:
    """A copy of ``value`` (nested dicts, lists and tuples of tensors and numbers) that training can
    no longer change: CPU tensors cloned; CUDA tensors copied without blocking into pinned host
    memory, on their device's current stream (added to ``devices``)."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.is_cuda:
            devices.add(value.device)
            host = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
            return host.copy_(value, non_blocking=True)
        return value.to("cpu", copy=True)
    if isinstance(value, OrderedDict):  # a state_dict: keep its _metadata (the module versions)
        copy = OrderedDict((key, _host_snapshot(item, devices)) for key, item in value.items())
        copy.__dict__.update(vars(value))
        return copy
    if isinstance(value, dict):
        return {key: _host_snapshot(item, devices) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_host_snapshot(item, devices) for item in value)
    return value


def _checkpoint_snapshot(state: dict) -> tuple[dict, list]:
    """(a host copy of ``state``, CUDA events recorded after its device copies: one per device).

    On a GPU ``torch.save`` of the live state would copy every tensor to the host with a sync
    while the GPU idles; here the main thread only enqueues the copies."""
    devices: set[torch.device] = set()
    snapshot = _host_snapshot(state, devices)
    copied = []
    for device in devices:
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(device))
        copied.append(event)
    return snapshot, copied


def _write_checkpoint(path: Path, state: dict, copied: list) -> None:
    """Wait for the snapshot's device copies (``copied``: CUDA events), then save ``state`` atomically."""
    for event in copied:
        event.synchronize()
    atomic_write(path, lambda temporary: torch.save(state, temporary))


def load_checkpoint(path: str | Path) -> dict:
    """Return a checkpoint written by ``train``, loaded with ``weights_only=True`` (no code runs)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"resume: no checkpoint at {path}") from None
    except Exception as error:
        raise ValueError(f"resume: {path} is not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or not {"model", "optimizer", "epoch", "history"} <= checkpoint.keys():
        raise ValueError(f"resume: {path} is not an initlab training checkpoint")
    return checkpoint


def train(model: nn.Module, dataset: Dataset, config: TrainConfig, *, device: torch.device | None = None,
          checkpoint: str | Path | None = None, resume: bool = False,
          on_step: Callable[[int, int], None] | None = None,
          on_epoch: Callable[[pd.DataFrame, pd.DataFrame], None] | None = None,
          watch_every: int | None = None) -> TrainResult:
    """Train ``model`` (already initialized) on ``dataset``; return its history and verdict.

    ``watch_every``: N records the probe's per-layer statistics of every N-th optimizer step from
    the step's own forward and backward (``initlab.watch``) into ``result.watch``, one row per
    watched step × layer, with ``step`` counted over the whole run (a resumed one too).
    ``checkpoint``: a path written atomically after every epoch (rank 0), from a copy of the state
    in a background thread while the next epoch trains; with ``resume`` the run continues from it.
    ``on_step(step, total)`` is called after each optimizer step (no host sync), ``on_epoch(history,
    slopes)`` after each epoch, in the calling thread. A KeyboardInterrupt propagates after the last
    completed epoch's checkpoint is on disk; a failed checkpoint write raises its error at the next
    epoch's write or at the end of the run.
    """
    rank, world = _distributed()
    device = device or next(model.parameters()).device
    model.to(device)
    dataset = scaled_inputs(dataset, config.input_scale)
    train_x, train_y = dataset.train_x.to(device), dataset.train_y.to(device)
    val_x, val_y = dataset.val_x.to(device), dataset.val_y.to(device)
    if config.batch_size < world:
        raise ValueError(f"batch size {config.batch_size} is smaller than the {world} processes sharing it")
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)
    total_steps = config.steps if config.steps is not None else steps_per_epoch * config.epochs
    epochs = math.ceil(total_steps / steps_per_epoch)
    optimizer = make_optimizer(model, config)
    history: list[dict] = []
    slopes: list[dict] = []
    start_epoch = 1
    if resume:
        state = load_checkpoint(checkpoint)
        saved = state.get("config", {})
        if saved:
            saved = {"input_scale": 1.0, **saved}  # a checkpoint from before the option trained at 1
        if saved and saved != asdict(config):
            now = asdict(config)
            changed = [f"{key} {saved.get(key)!r} in the checkpoint, {now.get(key)!r} now"
                       for key in sorted(set(saved) | set(now)) if saved.get(key) != now.get(key)]
            raise ValueError(f"resume: checkpoint was written with different settings: {'; '.join(changed)} "
                             "(run with the checkpoint's settings, or write elsewhere)")
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise ValueError(f"resume: checkpoint does not fit this model: {str(error).splitlines()[0]}") from None
        optimizer.load_state_dict(state["optimizer"])
        history, slopes = list(state["history"]), list(state.get("slopes", []))
        start_epoch = int(state["epoch"]) + 1
    else:
        slopes = _finish_slopes(*_slope_rows(model, 0))
    network = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    network.train()
    watched = watch(model, every=watch_every) if watch_every else None
    first_step = (start_epoch - 1) * steps_per_epoch

    # each epoch's checkpoint is written in the background while the next epoch trains
    writer = BackgroundWriter("initlab-checkpoint") if checkpoint is not None and rank == 0 else None
    try:
        for epoch in range(start_epoch, epochs + 1):
            started = time.perf_counter()
            order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(
                stream_seed(config.seed, SHUFFLE_STREAM + epoch))).to(device)
            loss_sum = torch.zeros((), device=device)
            errors = torch.zeros((), device=device)
            seen = 0
            for batch in range(steps_per_epoch):
                step = (epoch - 1) * steps_per_epoch + batch
                if step >= total_steps:
                    break
                rate = learning_rate(config, step, total_steps)
                if batch == 0:
                    first_rate = rate
                for group in optimizer.param_groups:
                    group["lr"] = rate
                batch_indices = order[batch * config.batch_size:(batch + 1) * config.batch_size]
                indices = torch.tensor_split(batch_indices, world)[rank] if world > 1 else batch_indices
                inputs, targets = train_x[indices], train_y[indices]
                logits = network(inputs)
                summed = nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
                # DDP averages gradients over ranks: scaling by world/global batch makes that the mean
                # over the global batch, exactly, even when the last batch splits unevenly.
                loss = summed * (world / len(batch_indices))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += summed.detach()
                errors += (logits.detach().argmax(dim=1) != targets).sum()
                seen += len(indices)
                if on_step is not None:
                    on_step(step + 1, total_steps)
            totals = torch.stack([loss_sum, errors.float(), torch.tensor(float(seen), device=device)])
            if world > 1:
                dist.all_reduce(totals)
            val_loss, val_errors = _evaluate(model, val_x, val_y, 1024)
            slope_stub, slope_values = _slope_rows(model, epoch)
            summary = torch.cat([totals, torch.stack([val_loss, val_errors.float()])]).cpu().tolist()  # one sync
            history.append({"epoch": epoch, "train_loss": summary[0] / summary[2],
                            "train_error": summary[1] / summary[2], "val_loss": summary[3] / len(val_x),
                            "val_error": summary[4] / len(val_x), "lr": first_rate, "lr_end": rate,
                            "seconds": time.perf_counter() - started})
            slopes += _finish_slopes(slope_stub, slope_values)
            if writer is not None:
                writer.wait()  # the previous epoch's file first: one snapshot in memory at a time
                writer.submit(_write_checkpoint, Path(checkpoint), *_checkpoint_snapshot(
                    {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                     "history": history, "slopes": slopes, "config": asdict(config)}))
            if on_epoch is not None:
                on_epoch(pd.DataFrame(history), pd.DataFrame(slopes))
            if not math.isfinite(history[-1]["train_loss"]):
                break  # diverged: further epochs only compute NaNs
    finally:
        if watched is not None:
            watched.remove()
        if writer is not None:
            writer.close()  # the last checkpoint is on disk, also when an exception (Ctrl-C) propagates
    frame = pd.DataFrame(history)
    outcome, reason = verdict(frame, dataset.num_classes)
    result = TrainResult(frame, pd.DataFrame(slopes), outcome, reason, asdict(config))
    if watched is not None:
        steps = watched.frame()
        if len(steps):
            steps["step"] += first_step
            dead = watched.dead_units()
            dead["step"] += first_step
            result.watch, result.watch_findings = steps, watch_findings(steps, dead)
    return result


def train_scheme(factory: Callable[[], nn.Module], init: str | None, dataset: Dataset, config: TrainConfig, *,
                 device: torch.device | None = None, checkpoint: str | Path | None = None, resume: bool = False,
                 on_step: Callable[[int, int], None] | None = None,
                 on_epoch: Callable[[pd.DataFrame, pd.DataFrame], None] | None = None,
                 watch_every: int | None = None) -> TrainResult:
    """Build a model for ``config.seed`` (``torch.manual_seed`` then the factory), initialize it
    with ``init`` (None: its own init) from the same seed, and train it."""
    model = build_seeded(factory, config.seed, device=device, init=init)
    result = train(model, dataset, config, device=device, checkpoint=checkpoint, resume=resume, on_step=on_step,
                   on_epoch=on_epoch, watch_every=watch_every)
    result.config["init"] = init or "model's own"
    return result


def slope_table(slopes: pd.DataFrame) -> pd.DataFrame:
    """Return the learned slopes at the last epoch, one row per PReLU layer (paper's Table 1 form)."""
    if slopes.empty:
        return slopes
    last = slopes[slopes["epoch"] == slopes["epoch"].max()]
    return last[["position", "layer", "channels", "slope_mean", "slope_std", "slope_min", "slope_max"]].reset_index(
        drop=True)


def start_distributed() -> tuple[int, int, torch.device | None]:
    """Join the process group when launched by torchrun; return (rank, world size, device).

    One process (no ``WORLD_SIZE`` above 1): (0, 1, None). On GPUs each rank takes the GPU of its
    ``LOCAL_RANK`` with the nccl backend; on CPUs the gloo backend."""
    if not launched_as_worker():
        return 0, 1, None
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        return dist.get_rank(), world, torch.device("cuda", local_rank)
    dist.init_process_group("gloo")
    return dist.get_rank(), world, torch.device("cpu")


def stop_distributed(completed: bool) -> None:
    """Leave the process group that ``start_distributed`` joined, as torch asks of every process
    before it exits: where every rank ``completed`` its work, first a barrier, so that no rank
    closes its connections while another still uses them; then ``destroy_process_group``. With
    no group (one process), nothing."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if completed:
        dist.barrier()
    dist.destroy_process_group()
