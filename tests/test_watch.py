"""``initlab.watch``: the probe's statistics from a training loop's own steps, against a probe of the
same weights on the same batch (forward) and a plain-PyTorch measurement of the loop's own loss
gradient (backward: hooks and ``torch.autograd.grad``, no initlab code)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab.watch import WatchError
from module_hooks import hook_count


def _net() -> nn.Module:
    torch.manual_seed(0)
    return initlab.apply_init(initlab.plain_net(depth=8, width=8, input_shape=(3, 16, 16), stages=2), "kaiming")


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    return torch.randn(16, 3, 16, 16, generator=generator), torch.randint(0, 10, (16,), generator=generator)


def _train(model: nn.Module, steps: int, every: int, snapshots: dict | None = None):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with initlab.watch(model, every=every) as watched:
        for step in range(steps):
            if snapshots is not None and step % every == 0:
                snapshots[step] = copy.deepcopy(model)
            x, y = _batch(step)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            model.eval()  # an evaluation forward between steps is not a step
            with torch.no_grad():
                model(x)
            model.train()
    return watched


def _plain_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, tuple[float, float, float]]:
    """Per Conv/Linear call: E[y²] of its output, E[Δy²] of the loss gradient there, Var of its weight gradient."""
    for module in model.modules():  # an in-place ReLU would overwrite the hooked outputs (the same function)
        if isinstance(module, nn.ReLU):
            module.inplace = False
    outputs: dict[str, torch.Tensor] = {}
    handles = [module.register_forward_hook(lambda m, a, out, n=name: outputs.__setitem__(n, out))
               for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    try:
        loss = F.cross_entropy(model(x), y)
    finally:
        for handle in handles:
            handle.remove()
    names = list(outputs)
    weights = [dict(model.named_modules())[n].weight for n in names]
    grads = torch.autograd.grad(loss, [outputs[n] for n in names] + weights)
    return {n: (float(outputs[n].detach().square().mean()), float(g.square().mean()), float(w.var(unbiased=False)))
            for n, g, w in zip(names, grads[:len(names)], grads[len(names):])}


def test_watched_steps_equal_a_probe_forward_and_the_loops_own_gradient():
    snapshots: dict[int, nn.Module] = {}
    watched = _train(_net(), steps=7, every=3, snapshots=snapshots)
    frame = watched.frame()
    assert sorted(frame["step"].unique()) == [0, 3, 6] and watched.steps_seen == 7
    for step, weights in snapshots.items():
        rows = frame[frame["step"] == step].set_index("name")
        x, y = _batch(step)
        probed = initlab.probe(copy.deepcopy(weights), x).to_frame().set_index("name")
        for column in ("var_y", "input_second_moment", "var_w_sampled", "example_correlation", "chi1"):
            np.testing.assert_allclose(rows[column], probed[column], rtol=1e-5, err_msg=column)
        plain = _plain_gradients(copy.deepcopy(weights), x, y)
        np.testing.assert_allclose(rows["var_y"], [plain[n][0] for n in rows.index], rtol=1e-5)
        np.testing.assert_allclose(rows["grad_output_second_moment"], [plain[n][1] for n in rows.index], rtol=1e-4)
        np.testing.assert_allclose(rows["weight_grad_variance"], [plain[n][2] for n in rows.index], rtol=1e-4)


def test_a_watch_leaves_no_hook_or_forward_behind_also_after_an_exception():
    model = _net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="boom"):
        with initlab.watch(model, every=1):
            model(_batch(0)[0])  # a watched forward whose backward never comes
            raise RuntimeError("boom")
    assert hook_count(model) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    handle = initlab.watch(model, every=1)
    with pytest.raises(WatchError, match="already watched"):
        initlab.watch(model)
    model.train()
    report = initlab.check(model, _batch(0)[0], jacobian_projections=2)
    assert report.healthy and handle.steps_seen == 0  # a check, its projections included, is not a step
    handle.remove()
    handle.remove()  # twice is harmless
    assert hook_count(model) == 0
    assert handle.frame().empty  # nothing was watched
    with pytest.raises(WatchError, match="every must be a whole number"):
        initlab.watch(model, every=0)


def test_a_watch_finds_the_first_step_a_prelu_slope_passes_one_and_units_die():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.PReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    initlab.apply_init(model, "kaiming")
    inputs = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    with initlab.watch(model, every=1) as watched:
        for step in range(4):
            if step == 2:
                with torch.no_grad():
                    model[1].weight.fill_(1.5)  # a slope beyond 1
                    model[2].bias.fill_(-100.0)  # every unit of the ReLU after it dies
            model(inputs).square().mean().backward()
    kinds = {finding["kind"]: finding for finding in watched.findings()}
    assert kinds["prelu-slope"]["step"] == 2 and kinds["prelu-slope"]["value"] == pytest.approx(1.5)
    assert kinds["dying-relu"]["step"] == 2 and kinds["dying-relu"]["value"] == 1.0
    # the dead ReLU's bias of -100 sends the layer before it 10^3.7 up and everything after it to 0
    assert kinds["forward-exploding"]["step"] == 2 and kinds["forward-exploding"]["layer"] == "2"
    assert kinds["backward-vanishing"]["step"] == 2


def test_a_step_without_backward_keeps_its_forward_and_a_model_without_layers_gives_an_empty_frame():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3))
    with initlab.watch(model, every=1) as watched:
        model(torch.randn(4, 3)).sum().backward()
        model(torch.randn(4, 3))  # a forward whose backward never comes
    frame = watched.frame()
    assert list(frame["step"]) == [0, 1]
    assert frame["grad_output_second_moment"].iloc[0] == pytest.approx(1.0)  # d(sum)/dy = 1
    assert np.isnan(frame["grad_output_second_moment"].iloc[1]) and frame["var_y"].notna().all()
    layerless = nn.Sequential(nn.ReLU())
    with initlab.watch(layerless, every=1) as watched:
        layerless(torch.randn(4, 3, requires_grad=True)).sum().backward()
    assert watched.frame().empty and watched.findings() == []
