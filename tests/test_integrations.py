"""The framework integrations with the real libraries (test extras): a PyTorch Lightning callback, a
Hugging Face ``TrainerCallback`` and the TensorBoard export, each on a tiny model for a few steps."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab
from initlab.check import UnhealthyInitError
from module_hooks import hook_count

pl = pytest.importorskip("lightning.pytorch")
pytest.importorskip("tensorboard")


def _scalars(directory) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under ``directory``, read back by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(directory))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _plain(init: str | None) -> nn.Module:
    torch.manual_seed(0)
    net = initlab.plain_net(depth=8, width=8, input_shape=(3, 16, 16), stages=2)
    return initlab.apply_init(net, init) if init else net  # None: PyTorch's default init


class _Classifier(pl.LightningModule if pl else object):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _loader() -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, 3, 16, 16, generator=generator),
                                          torch.randint(0, 10, (64,), generator=generator))
    return torch.utils.data.DataLoader(data, batch_size=16)


def _fit(module, callback, tmp_path) -> None:
    trainer = pl.Trainer(max_epochs=1, callbacks=[callback], logger=pl.loggers.TensorBoardLogger(str(tmp_path)),
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(module, _loader())


def test_the_lightning_callback_watches_the_fit_checks_its_first_step_and_logs_to_tensorboard(tmp_path):
    from initlab.integrations.lightning import InitlabCallback
    module = _Classifier(_plain("kaiming"))
    callback = InitlabCallback(every=2, on_unhealthy="fail")
    _fit(module, callback, tmp_path)
    assert callback.report.healthy and hook_count(module) == 0
    frame = callback.frame()
    assert sorted(frame["step"].unique()) == [0, 2]  # 4 batches, every 2nd
    scalars = _scalars(next(tmp_path.rglob("events.out.tfevents.*")).parent)
    first = frame[(frame["step"] == 2) & (frame["index"] == 0)].iloc[0]
    logged = dict(scalars[f"initlab/output_second_moment/{first['name']}"])
    assert logged[2] == pytest.approx(first["var_y"], rel=1e-6) and sorted(logged) == [0, 2]


def test_the_lightning_callback_fails_or_warns_on_a_default_init(tmp_path):
    from initlab.integrations.lightning import InitlabCallback
    module = _Classifier(_plain(None))
    with pytest.raises(UnhealthyInitError, match="PyTorch's default init"):
        _fit(module, InitlabCallback(every=2, on_unhealthy="fail"), tmp_path / "fail")
    assert hook_count(module) == 0  # removed on the exception too
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(_Classifier(_plain(None)), InitlabCallback(every=2, on_unhealthy="warn"), tmp_path / "warn")
    assert any("PyTorch's default init" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match="on_unhealthy must be one of fail, warn, ignore"):
        InitlabCallback(on_unhealthy="maybe")


def _hf_fit(model, callback, tmp_path, steps: int = 4) -> None:
    import transformers
    ids = torch.randint(0, model.config.vocab_size, (16, 16), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": row, "labels": row} for row in ids]
    arguments = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=4,
                                               report_to=[], use_cpu=True, save_strategy="no", logging_strategy="no",
                                               learning_rate=1e-3, disable_tqdm=True)
    transformers.Trainer(model=model, args=arguments, train_dataset=data, callbacks=[callback]).train()


def test_the_hugging_face_callback_checks_gpt2_and_fails_on_unit_gaussian_weights(tmp_path):
    corpus = pytest.importorskip("corpus")
    from initlab.integrations.huggingface import InitlabCallback
    model, _ = corpus.build("gpt2")
    callback = InitlabCallback(every=2, on_unhealthy="fail", tensorboard_dir=str(tmp_path / "tb"))
    _hf_fit(model, callback, tmp_path)
    assert callback.report.healthy, callback.report.text()
    assert sorted(callback.frame()["step"].unique()) == [0, 2] and hook_count(model) == 0
    assert any(tag.startswith("initlab/grad_second_moment/") for tag in _scalars(tmp_path / "tb"))
    broken, _ = corpus.build("gpt2")
    corpus.redraw_weights(broken, 1.0)  # std-1 weights: saturated attention, exploding stream
    with pytest.raises(UnhealthyInitError):
        _hf_fit(broken, InitlabCallback(every=2, on_unhealthy="fail"), tmp_path / "broken")


def test_write_watch_writes_one_scalar_per_layer_statistic_and_step(tmp_path):
    from initlab.integrations.tensorboard import write_watch
    model = _plain("kaiming")
    with initlab.watch(model, every=1) as watched:
        for x, y in list(_loader())[:2]:
            F.cross_entropy(model(x), y).backward()
    frame = watched.frame()
    written = write_watch(frame, tmp_path)
    scalars = _scalars(tmp_path)
    assert written == sum(len(points) for points in scalars.values())
    assert {f"initlab/output_second_moment/{name}" for name in frame["name"]} <= set(scalars)
