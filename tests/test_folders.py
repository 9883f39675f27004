"""Probe and train folders: what is written is what the report reads back."""

import json

import pandas as pd
import torch

import initlab
from initlab.folders import load_probe_folder, load_train_folder, probe_frame, write_probe_folder, write_train_folder


def test_a_probe_folder_reads_back_as_the_frames_written(tmp_path):
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    results = {f"{init} / relu": initlab.probe(lambda: initlab.mlp(depth=3, width=16, input_shape=(16,)), x, init=init,
                                               seeds=2, config={"act": "relu"}) for init in ("xavier-fanin", "kaiming")}
    written = write_probe_folder(results, tmp_path, "mlp")
    assert [path.name for path in written] == ["probe.csv", "summary.csv", "probe.json", "variance_vs_depth.png"]
    loaded = load_probe_folder(tmp_path)
    assert list(loaded) == ["xavier-fanin / relu", "kaiming / relu"]
    pd.testing.assert_frame_equal(loaded["kaiming / relu"].reset_index(drop=True),
                                  pd.read_csv(tmp_path / "probe.csv").query("init == 'kaiming'")
                                  .drop(columns=["init", "act"]).reset_index(drop=True))
    assert len(probe_frame(results)) == 2 * 2 * 3
    assert [document["config"]["init"] for document in json.loads((tmp_path / "probe.json").read_text())] == \
        ["xavier-fanin", "kaiming"]


def test_a_train_folder_reads_back_verdicts_and_histories(tmp_path):
    from initlab.data import load_dataset
    from initlab.train import TrainConfig, train_scheme
    digits = load_dataset("digits", seed=0)
    result = train_scheme(lambda: initlab.mlp(depth=3, width=16, input_shape=(1, 8, 8)), "kaiming", digits,
                          TrainConfig(epochs=2, seed=0))
    write_train_folder({"kaiming": result}, tmp_path, "mlp")
    stored = load_train_folder(tmp_path)["kaiming"]
    assert stored.verdict == result.verdict and stored.final_val_error == result.final_val_error
    assert list(stored.history["epoch"]) == [1, 2] and (tmp_path / "curves.png").stat().st_size > 0
