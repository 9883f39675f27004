"""Initialization schemes by name, each stating the weight variance it draws.

A scheme spec is a name with options after a colon, e.g. ``kaiming``,
``kaiming:a=0,mode=fan_out,dist=uniform``, ``normal:0.01``, ``xavier:dist=uniform``.
Notation (paper §2.2): n = fan_in = k^d·c/groups, n̂ = fan_out = k^d·d/groups, a = the negative
slope of the rectifier next to the layer. Biases are zeroed by every scheme but ``torch-default``.

``apply_init(model, scheme)`` changes the model in place; the probe never calls it on a user's
model, only on its own copy.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .activations import activation_factor, is_rectifier, variance_factor
from .layers import fans, is_covered
from .names import did_you_mean
from .theory import rectifier_factor, slope_from_factor


# -- the schemes: formula in each docstring -------------------------------------------------


def kaiming_(weight: torch.Tensor, *, fan_in: int, fan_out: int, slope: float = 0.0, mode: str = "fan_in",
             dist: str = "normal", generator: torch.Generator | None = None, factor: float | None = None) -> torch.Tensor:
    """Fill ``weight`` with He et al. 2015's init: Var[w] = 2 / ((1+a²)·n).

    n = fan_in (``mode="fan_in"``, forward condition, paper eq. 10) or n̂ = fan_out
    (``mode="fan_out"``, backward condition, eq. 14); a is the rectifier's slope (PReLU form,
    ½(1+a²)·n·Var[w] = 1). ``dist="normal"``: N(0, Var); ``"uniform"``: U(−√(3·Var), √(3·Var)).
    Same draws as ``torch.nn.init.kaiming_normal_/kaiming_uniform_(w, a, mode,
    nonlinearity="leaky_relu")`` for groups = 1. ``factor``: the activation's second-moment factor
    c = E[f(y)²]/E[y²] in place of ½(1+a²) (``kaiming_variance``).
    """
    return _fill(weight, kaiming_variance(fan_in=fan_in, fan_out=fan_out, slope=slope, mode=mode, factor=factor),
                 dist, generator)


def kaiming_variance(*, fan_in: int, fan_out: int, slope: float = 0.0, mode: str = "fan_in",
                     factor: float | None = None) -> float:
    """Return 2 / ((1+a²)·n), n = fan_in or fan_out by ``mode`` (paper eqs. 10 and 14).

    He's condition c·n·Var[w] = 1 for any activation: c = ½(1+a²) for a rectifier of slope a,
    c = E[f(y)²]/E[y²] at y ~ N(0, 1) for a smooth one (``activations.activation_factor``:
    GELU 0.425, SiLU 0.356, tanh 0.394), given as ``factor``; Var[w] = 1/(c·n)."""
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    c = float(rectifier_factor(slope)) if factor is None else factor
    return 1.0 / (c * fan)


def xavier_(weight: torch.Tensor, *, fan_in: int, fan_out: int, gain: float = 1.0, dist: str = "normal",
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``weight`` with Glorot & Bengio 2010's init: Var[w] = gain²·2 / (n + n̂).

    Same draws as ``torch.nn.init.xavier_normal_/xavier_uniform_`` for groups = 1.
    """
    return _fill(weight, gain * gain * 2.0 / (fan_in + fan_out), dist, generator)


def xavier_fanin_(weight: torch.Tensor, *, fan_in: int, dist: str = "normal",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``weight`` with Var[w] = 1/n, the "Xavier" form the paper compares against (§2.2).

    Under ReLU each layer then multiplies the signal's second moment by ½: 2^−(L−1) over L
    layers (paper eq. 9 with ½·n·Var[w] = ½).
    """
    return _fill(weight, 1.0 / fan_in, dist, generator)


def normal_(weight: torch.Tensor, *, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``weight`` with N(0, std²), the fixed-std init the paper discusses (std 0.01)."""
    with torch.no_grad():
        return weight.normal_(0.0, std, generator=generator)


def orthogonal_(weight: torch.Tensor, *, slope: float = 0.0, generator: torch.Generator | None = None,
                factor: float | None = None) -> torch.Tensor:
    """Fill ``weight`` with a random orthogonal matrix scaled by the He gain √(2/(1+a²)).

    The weight is viewed as rows = out_channels × cols = n. Rows (or columns, if rows > cols)
    are orthonormal, so E[w²] = gain² / max(rows, cols): for rows ≤ cols this is exactly He's
    Var[w] = 2/((1+a²)·n). Draws as ``torch.nn.init.orthogonal_(w, gain)``.
    """
    c = float(rectifier_factor(slope)) if factor is None else factor
    return nn.init.orthogonal_(weight, gain=math.sqrt(1.0 / c), generator=generator)


def orthogonal_variance(shape: torch.Size | tuple[int, ...], slope: float = 0.0, factor: float | None = None) -> float:
    """Return E[w²] = (2/(1+a²)) / max(rows, cols) of a He-scaled orthogonal weight (1/c for a factor c)."""
    rows = shape[0]
    cols = math.prod(shape) // rows
    c = float(rectifier_factor(slope)) if factor is None else factor
    return 1.0 / c / max(rows, cols)


def torch_default_variance(fan_in: int) -> float:
    """Return 1/(3·n): PyTorch's default Conv/Linear init, kaiming_uniform_(a=√5).

    gain² = 2/(1+5) = 1/3, Var[w] = gain²/n; the bias is U(−1/√n, 1/√n), also Var 1/(3·n).
    Under ReLU each layer multiplies the signal by ½·n·Var[w] = 1/6.
    """
    return 1.0 / (3.0 * fan_in)


def _fill(weight: torch.Tensor, variance: float, dist: str, generator: torch.Generator | None) -> torch.Tensor:
    with torch.no_grad():
        if dist == "normal":
            return weight.normal_(0.0, math.sqrt(variance), generator=generator)
        if dist == "uniform":
            bound = math.sqrt(3.0 * variance)
            return weight.uniform_(-bound, bound, generator=generator)
    raise ValueError(f"dist must be 'normal' or 'uniform', got {dist!r}")


# -- registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemeSpec:
    """A registry entry: the options a scheme takes and their defaults, and its two functions.

    ``variance(shape, fan_in, fan_out, options, factor)`` is the nominal Var[w]; ``draw(weight,
    fan_in, fan_out, options, factor, generator)`` fills a weight in place (None: the module's own
    ``reset_parameters``). ``factor`` is the activation factor c the scheme balances
    (``Scheme.factor``)."""

    name: str
    summary: str
    defaults: dict[str, Any]
    positional: str | None = None  # option that may be given bare, as in normal:0.01
    variance: Callable[..., float] | None = None
    draw: Callable[..., None] | None = None


def _kaiming_variance(shape, fan_in, fan_out, options, factor):
    return kaiming_variance(fan_in=fan_in, fan_out=fan_out, mode=options["mode"], factor=factor)


def _kaiming_draw(weight, fan_in, fan_out, options, factor, generator):
    kaiming_(weight, fan_in=fan_in, fan_out=fan_out, mode=options["mode"], dist=options["dist"], generator=generator,
             factor=factor)


def _xavier_variance(shape, fan_in, fan_out, options, factor):
    return float(options["gain"]) ** 2 * 2.0 / (fan_in + fan_out)


def _xavier_draw(weight, fan_in, fan_out, options, factor, generator):
    xavier_(weight, fan_in=fan_in, fan_out=fan_out, gain=float(options["gain"]), dist=options["dist"],
            generator=generator)


def _xavier_fanin_variance(shape, fan_in, fan_out, options, factor):
    return 1.0 / fan_in


def _xavier_fanin_draw(weight, fan_in, fan_out, options, factor, generator):
    xavier_fanin_(weight, fan_in=fan_in, dist=options["dist"], generator=generator)


def _torch_default_variance(shape, fan_in, fan_out, options, factor):
    return torch_default_variance(fan_in)


def _normal_variance(shape, fan_in, fan_out, options, factor):
    return float(options["std"]) ** 2


def _normal_draw(weight, fan_in, fan_out, options, factor, generator):
    normal_(weight, std=float(options["std"]), generator=generator)


def _orthogonal_variance(shape, fan_in, fan_out, options, factor):
    return orthogonal_variance(tuple(shape), factor=factor)


def _orthogonal_draw(weight, fan_in, fan_out, options, factor, generator):
    orthogonal_(weight, generator=generator, factor=factor)


SCHEMES: dict[str, SchemeSpec] = {
    "kaiming": SchemeSpec("kaiming", "He 2015: Var[w] = 1/(c·n), c = ½(1+a²) of the adjacent rectifier (or a=), "
                          "E[f(z)²] of GELU/SiLU/...; branch=scaled: residual branch ends /K (needs an example input)",
                          {"a": "auto", "mode": "fan_in", "dist": "normal", "branch": "none"},
                          variance=_kaiming_variance, draw=_kaiming_draw),
    "xavier": SchemeSpec("xavier", "Glorot 2010: Var[w] = 2/(fan_in+fan_out)", {"dist": "normal", "gain": 1.0},
                         variance=_xavier_variance, draw=_xavier_draw),
    "xavier-fanin": SchemeSpec("xavier-fanin", "Var[w] = 1/fan_in, the paper's 'Xavier' (halves ReLU signal per layer)",
                               {"dist": "normal"}, variance=_xavier_fanin_variance, draw=_xavier_fanin_draw),
    "torch-default": SchemeSpec("torch-default", "PyTorch's own reset_parameters(): Var[w] = 1/(3·fan_in), bias too",
                                {}, variance=_torch_default_variance),
    "normal": SchemeSpec("normal", "fixed std: Var[w] = STD², e.g. normal:0.01", {"std": None}, positional="std",
                         variance=_normal_variance, draw=_normal_draw),
    "orthogonal": SchemeSpec("orthogonal", "orthogonal, He-scaled: E[w²] = 2/((1+a²)·max(rows, cols))",
                             {"a": "auto"}, variance=_orthogonal_variance, draw=_orthogonal_draw),
}

_CHOICES = {"mode": ("fan_in", "fan_out"), "dist": ("normal", "uniform"), "branch": ("none", "scaled")}


@dataclass(frozen=True)
class Scheme:
    """A parsed scheme: registry name plus options. ``str(scheme)`` gives the canonical spec."""

    name: str
    options: tuple[tuple[str, Any], ...]

    def option(self, key: str) -> Any:
        return dict(self.options)[key]

    def __str__(self) -> str:
        given = [f"{k}={v}" for k, v in self.options if SCHEMES[self.name].defaults.get(k) != v]
        return self.name + (":" + ",".join(given) if given else "")

    def slope(self, network_slope: float) -> float:
        """Return the slope a the scheme uses: its ``a=`` option, else the network's."""
        a = dict(self.options).get("a", "auto")
        return network_slope if a == "auto" else float(a)

    def factor(self, network_slope: float, network_factor: float | None = None) -> float:
        """Return the activation factor c the scheme balances: ½(1+a²) for its ``a=`` option, else the
        network's activation factor (``network_factor``), else ½(1+a²) of the network's slope."""
        if dict(self.options).get("a", "auto") != "auto" or network_factor is None:
            a = self.slope(network_slope)
            return float(rectifier_factor(a))
        return network_factor

    def weight_variance(self, shape: tuple[int, ...], fan_in: int, fan_out: int, network_slope: float = 0.0, *,
                        network_factor: float | None = None) -> float:
        """Return the scheme's nominal Var[w] for a layer with these fans and adjacent slope (or
        activation factor)."""
        return SCHEMES[self.name].variance(shape, fan_in, fan_out, dict(self.options),
                                           self.factor(network_slope, network_factor))

    def bias_variance(self, fan_in: int, has_bias: bool) -> float:
        """Return the nominal Var[b]: 1/(3·fan_in) for torch-default, 0 for every other scheme."""
        return torch_default_variance(fan_in) if (self.name == "torch-default" and has_bias) else 0.0

    def init_layer_(self, layer: nn.Module, network_slope: float, generator: torch.Generator | None, *,
                    network_factor: float | None = None) -> None:
        """Initialize one Conv/Linear layer in place (weights by the scheme, bias zeroed).

        With a (CPU) generator and a weight that is not float32 on the CPU, the draw is made in a
        float32 CPU tensor and copied over, so a seed gives the same weights on every device.
        """
        if self.name == "torch-default":
            layer.reset_parameters()
            return
        fill_staged_(layer.weight, lambda target: self._draw(target, layer, network_slope, generator, network_factor),
                     generator)
        if layer.bias is not None:
            with torch.no_grad():
                layer.bias.zero_()

    def _draw(self, weight: torch.Tensor, layer: nn.Module, network_slope: float,
              generator: torch.Generator | None, network_factor: float | None = None) -> None:
        fan_in, fan_out = fans(layer)
        SCHEMES[self.name].draw(weight, fan_in, fan_out, dict(self.options), self.factor(network_slope, network_factor),
                                generator)


def scheme_names() -> list[str]:
    """Return the registered scheme names."""
    return list(SCHEMES)


def parse_scheme(spec: str | Scheme) -> Scheme:
    """Return the ``Scheme`` for a spec such as ``kaiming:a=0,mode=fan_out`` or ``normal:0.01``.

    Raises ``ValueError`` with the valid names (and the closest one) or the valid options.
    """
    if isinstance(spec, Scheme):
        return spec
    text = spec.strip()
    name, _, rest = text.partition(":")
    if name not in SCHEMES:
        raise ValueError(f"unknown init scheme {name!r}; valid: {', '.join(SCHEMES)}{did_you_mean(name, SCHEMES)}")
    entry = SCHEMES[name]
    options = dict(entry.defaults)
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            if entry.positional is None:
                raise ValueError(f"init {text!r}: option {item!r} needs key=value; {name} takes "
                                 f"{', '.join(entry.defaults) or 'no options'}")
            key, value = entry.positional, item
        key, value = key.strip(), value.strip()
        if key not in entry.defaults:
            raise ValueError(f"init {text!r}: unknown option {key!r}; {name} takes "
                             f"{', '.join(entry.defaults) or 'no options'}")
        options[key] = _parse_option(text, key, value)
    if name == "normal" and options["std"] is None:
        raise ValueError("init 'normal' needs its std, e.g. 'normal:0.01'")
    return Scheme(name, tuple(options.items()))


def _parse_option(spec: str, key: str, value: str) -> Any:
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise ValueError(f"init {spec!r}: {key} must be one of {', '.join(_CHOICES[key])}, got {value!r}")
        return value
    if key == "a" and value == "auto":
        return value
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"init {spec!r}: {key}={value!r} is not a number") from None
    if not math.isfinite(number) or (key in ("std", "gain") and number <= 0):
        raise ValueError(f"init {spec!r}: {key} must be a positive finite number, got {value!r}")
    return number


# -- applying a scheme to a model ----------------------------------------------------------

INIT_STREAM, DIRECTION_STREAM, INPUT_STREAM, DROPOUT_STREAM, PROJECTION_STREAM = 0, 1, 2, 3, 4


def stream_seed(seed: int, stream: int) -> int:
    """Return a 63-bit seed for one purpose (init, output direction, input) of user seed ``seed``.

    Seeding every purpose with the bare seed would make them draw the same numbers: weights equal
    to the input batch, row for row, under ``torch.manual_seed(0)`` and ``seed=0``. NumPy's
    SeedSequence mixes (seed, stream) into independent streams.
    """
    state = np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & (2 ** 63 - 1)



def adjacent_slopes(model: nn.Module) -> dict[nn.Module, tuple[float | None, float | None]]:
    """Return, for each Conv/Linear layer, the effective slopes of the rectifiers next to it.

    The pair is (slope of the rectifier feeding the layer, slope of the one following it), found
    in module registration order (the forward order of Sequential-style models); None where
    there is none. A channel-wise PReLU counts as the single slope with the same mean factor.
    All slopes are read with one host transfer.
    """
    sequence = [m for m in model.modules() if is_covered(m) or is_rectifier(m)]
    slope = _slopes([m for m in sequence if is_rectifier(m)])
    found: dict[nn.Module, tuple[float | None, float | None]] = {}
    for position, module in enumerate(sequence):
        if not is_covered(module):
            continue
        before = sequence[position - 1] if position > 0 else None
        after = sequence[position + 1] if position + 1 < len(sequence) else None
        found[module] = (
            slope[before] if before is not None and is_rectifier(before) else None,
            slope[after] if after is not None and is_rectifier(after) else None,
        )
    return found


def adjacent_factors(model: nn.Module) -> dict[nn.Module, tuple[float | None, float | None, bool]]:
    """Return, for each Conv/Linear layer, the second-moment factors c = E[f(y)²]/E[y²] of the
    activations next to it (feeding, following), in module registration order as
    ``adjacent_slopes``: ½(1+a²) for a rectifier, the Gauss–Hermite value at y ~ N(0, 1) for a
    smooth activation module (GELU, SiLU, tanh, Hugging Face's activation modules); None where
    there is none. The third entry says whether the following activation is a rectifier."""
    sequence = [m for m in model.modules() if is_covered(m) or is_rectifier(m) or activation_factor(m) is not None]
    rectifier_factors = {m: float(rectifier_factor(a)) for m, a in _slopes([m for m in sequence if is_rectifier(m)]).items()}

    def factor(module: nn.Module | None) -> float | None:
        if module is None or is_covered(module):
            return None
        return rectifier_factors[module] if is_rectifier(module) else activation_factor(module)

    def after(position: int) -> nn.Module | None:
        return sequence[position + 1] if position + 1 < len(sequence) else None

    return {module: (factor(sequence[position - 1] if position > 0 else None), factor(after(position)),
                     after(position) is not None and is_rectifier(after(position)))
            for position, module in enumerate(sequence) if is_covered(module)}


def network_factor(scheme: Scheme, feeding: float | None, following: float | None,
                   following_is_rectifier: bool = True) -> float:
    """Return the activation factor c a kaiming/orthogonal layer balances, by the rule of
    ``network_slope`` (the activation on the side of the scheme's mode, else the other); with no
    activation next to the layer, ½ (He's ReLU).

    A first layer (fan_in mode, nothing feeding it) in front of a smooth activation takes c = 1,
    its raw input's: a rectifier is homogeneous, so borrowing its ½ only scales the whole chain,
    but GELU's factor E[f(y)²]/E[y²] depends on E[y²], and the chain holds only at E[y²] = 1."""
    mode = dict(scheme.options).get("mode", "fan_in")
    if mode == "fan_in" and feeding is None and following is not None and not following_is_rectifier:
        return 1.0
    first, second = (feeding, following) if mode == "fan_in" else (following, feeding)
    return first if first is not None else (second if second is not None else 0.5)


def _slopes(rectifiers: list[nn.Module]) -> dict[nn.Module, float]:
    """Return each rectifier's effective slope √(2·factor − 1), all factors moved to the host at once."""
    if not rectifiers:
        return {}
    device = next((m.weight.device for m in rectifiers if isinstance(m, nn.PReLU)), torch.device("cpu"))
    values = torch.stack([variance_factor(m).detach().float().reshape(()).to(device) for m in rectifiers]).cpu()
    return {m: slope_from_factor(v) for m, v in zip(rectifiers, values.tolist())}


def network_slope(scheme: Scheme, feeding: float | None, following: float | None) -> float:
    """Return the slope a kaiming/orthogonal layer should use given its adjacent rectifiers.

    Forward (fan_in) mode balances ½(1+a²)·n·Var[w] with the rectifier applied to the layer's
    input (paper eq. 7), backward (fan_out) mode with the one applied to its output (eq. 13).
    Where that one is missing (first or last layer) the other is used, as the paper uses one
    rule everywhere; with no rectifier at all, a = 0.
    """
    mode = dict(scheme.options).get("mode", "fan_in")
    first, second = (feeding, following) if mode == "fan_in" else (following, feeding)
    return first if first is not None else (second if second is not None else 0.0)


def apply_init(model: nn.Module, scheme: str | Scheme, *, seed: int | None = None,
               example_input: Any = None) -> nn.Module:
    """Initialize every Conv/Linear layer of ``model`` in place with ``scheme``; return ``model``.

    Kaiming and orthogonal balance the activation next to each layer (``adjacent_factors``:
    rectifiers and smooth activations such as GELU, in module registration order). Embedding
    tables and layers tied to them are left alone; weight parameters outside Conv/Linear modules
    are not drawn, and an ``UndrawnWeightsWarning`` names them. With ``example_input`` the model
    is probed first and every layer the probe covers is drawn for the activations the trace
    found next to it (``traced_init.init_from_trace``): the form for Hugging Face models.

    With ``seed``, draws come from a CPU generator seeded with ``stream_seed(seed, INIT_STREAM)``,
    so the same seed gives the same weights on every device and dtype, independent of anything
    drawn after ``torch.manual_seed(seed)``; ``torch-default`` reseeds the CPU RNG the same way
    inside a forked RNG state. Without ``seed`` the global RNG is used, as torch.nn.init does.
    """
    if example_input is not None:  # the activations next to each layer from a traced pass, every weight op
        from .traced_init import init_from_trace
        return init_from_trace(model, scheme, example_input, seed=seed)
    scheme = parse_scheme(scheme)
    if dict(scheme.options).get("branch", "none") != "none":
        raise ValueError(f"{scheme}: residual branches are found by a traced pass; give example_input")
    tables = embedding_tables(model)
    # a layer whose weight is an embedding table (a tied output projection) is the table: left alone
    layers = [m for m in model.modules() if is_covered(m) and id(m.weight) not in tables]
    warn_undrawn(model, {id(m.weight) for m in layers}, tables, "apply_init draws Conv/Linear modules only")
    if scheme.name == "torch-default":
        # reset_parameters() draws from the global RNG of the weight's device; reset a CPU copy of
        # each layer instead, so a seed gives the same weights on every device.
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.default_generator.manual_seed(stream_seed(seed, INIT_STREAM))  # the CPU RNG only
            for layer in layers:
                if seed is None or all(p.device.type == "cpu" and p.dtype == torch.float32
                                       for p in layer.parameters()):
                    layer.reset_parameters()
                    continue
                staging = copy.deepcopy(layer).to(device="cpu", dtype=torch.float32)
                staging.reset_parameters()
                with torch.no_grad():
                    for target, source in zip(layer.parameters(), staging.parameters()):
                        target.copy_(source)
        return model
    generator = torch.Generator().manual_seed(stream_seed(seed, INIT_STREAM)) if seed is not None else None
    factors = adjacent_factors(model)
    for layer in layers:
        scheme.init_layer_(layer, 0.0, generator, network_factor=network_factor(scheme, *factors[layer]))
    return model


class UndrawnWeightsWarning(UserWarning):
    """``apply_init`` left weight parameters alone that the model multiplies by (not Conv/Linear modules)."""


def fill_staged_(weight: torch.Tensor, draw: Any, generator: torch.Generator | None) -> None:
    """Run ``draw(tensor)`` on ``weight`` in place. With a (CPU) generator and a weight that is not
    float32 on the CPU, the draw is made in a float32 CPU tensor and copied over, so a seed gives
    the same weights on every device and dtype."""
    if generator is not None and (weight.device.type != "cpu" or weight.dtype != torch.float32):
        staging = torch.empty(weight.shape, dtype=torch.float32)
        draw(staging)
        with torch.no_grad():
            weight.copy_(staging)
    else:
        draw(weight)


def embedding_tables(model: nn.Module) -> set[int]:
    """The ids of the model's embedding tables: never drawn, nor a layer tied to one."""
    return {id(m.weight) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))}


def warn_undrawn(model: nn.Module, drawn: set[int], tables: set[int], what: str, stacklevel: int = 3) -> None:
    """Say which ≥ 2-D parameters an init did not draw (``what`` says what it draws) rather than
    leave the model half re-initialized in silence; tables and added (1, …) tokens are not named."""
    undrawn = [name for name, p in model.named_parameters() if p.dim() >= 2 and id(p) not in drawn
               and id(p) not in tables and p.shape[0] != 1]
    if undrawn:
        shown = ", ".join(undrawn[:5]) + (f", … {len(undrawn) - 5} more" if len(undrawn) > 5 else "")
        warnings.warn(f"{what}: {len(undrawn)} weight parameter(s) are left as they are ({shown}); embedding "
                      "tables and tied weights are left alone too", UndrawnWeightsWarning, stacklevel=stacklevel)
