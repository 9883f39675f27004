"""Reports: a self-contained HTML page that embeds every figure and links the data behind it."""

import base64
import os
import stat
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import torch

import initlab
from initlab.cli import main
from initlab.data import load_dataset
from initlab.files import atomic_write_text
from initlab.report import (init_colour, paper_tables_section, probe_section, report_header, training_section,
                            write_html)
from initlab.train import TrainConfig, slope_table, train_scheme


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.scripts, self.tables = [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes["src"])
        elif tag == "a":
            self.links.append(attributes["href"])
        elif tag == "script":
            self.scripts += 1
        elif tag == "table":
            self.tables += 1


def _parse(page: Path) -> _Page:
    parser = _Page()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _check_page(page: Path, figures: int):
    parsed = _parse(page)
    assert parsed.scripts == 0
    assert len(parsed.images) == figures
    for source in parsed.images:
        assert source.startswith("data:image/png;base64,")
        png = base64.b64decode(source.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert parsed.links
    for link in parsed.links:
        target = page.parent / link
        assert target.is_file() and target.stat().st_size > 0, link
    return parsed


def test_report_from_a_tiny_probe_and_training_run(tmp_path):
    x = torch.randn(8, 32)
    frames = {f"{init} / relu": initlab.probe(lambda: initlab.mlp(depth=4, width=32), x, init=init, seeds=2).frame
              for init in ("xavier-fanin", "kaiming")}
    data = load_dataset("synthetic", seed=0, input_shape=(16,))
    factory = lambda: initlab.mlp(depth=3, width=16, input_shape=(16,), act="prelu")
    runs = {init: train_scheme(factory, init, data, TrainConfig(epochs=2, lr=0.05)) for init in ("xavier-fanin",
                                                                                                  "kaiming")}
    table2 = pd.DataFrame({"run": ["kaiming / prelu"], "final_val_error_mean": [runs["kaiming"].final_val_error]})
    table1 = slope_table(runs["kaiming"].slopes)[["position", "layer", "slope_mean"]]
    sections = [probe_section(frames, tmp_path / "probe", "Probe"),
                training_section(runs, tmp_path / "train", "Training"),
                paper_tables_section(table2, table1, tmp_path / "tables", "tiny scale")]
    page = write_html(tmp_path / "index.html", "tiny", report_header("pytest"), sections)
    parsed = _check_page(page, figures=4)
    assert parsed.tables >= 5
    text = page.read_text(encoding="utf-8")
    for expected in ("pytest", "torch " + torch.__version__, "0.681", "33.82", "tiny scale"):
        assert expected in text
    for figure in ("probe/variance_vs_depth.png", "probe/layer_factors.png", "probe/correlation_vs_depth.png",
                   "train/training_curves.png"):
        assert (tmp_path / figure).stat().st_size > 10_000


def test_cli_report_from_probe_and_train_folders(capsys, tmp_path):
    assert main(["probe", "--model", "mlp", "--depth", "4", "--width", "16", "--seeds", "2", "--out",
                 str(tmp_path / "p"), "--format", "json"]) == 0
    assert main(["train", "--depth", "5", "--width", "8", "--epochs", "2", "--quiet", "--compare",
                 "xavier-fanin,kaiming", "--out", str(tmp_path / "t"), "--format", "json"]) == 0
    capsys.readouterr()
    assert main(["report", "--out", str(tmp_path / "r"), "--from", str(tmp_path / "p"), "--from",
                 str(tmp_path / "t")]) == 0
    _check_page(tmp_path / "r" / "index.html", figures=4)
    code = main(["report", "--out", str(tmp_path / "r2"), "--from", str(tmp_path)])
    assert code == 2 and "no probe.csv or train.json" in capsys.readouterr().err


def test_outputs_get_the_usual_file_mode(tmp_path):
    path = atomic_write_text(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_an_init_keeps_its_colour_across_figures():
    assert init_colour("kaiming / relu") == init_colour("kaiming / prelu") == init_colour("kaiming")
    assert init_colour("xavier-fanin / relu") != init_colour("kaiming / relu")
    assert init_colour("kaiming:a=0 / relu") == init_colour("kaiming:a=0 / prelu")


def test_runs_of_one_init_are_coloured_by_activation_and_runs_of_several_by_init():
    from initlab.report import INIT_COLOURS, run_colours
    table2 = run_colours(["kaiming / relu", "kaiming / prelu-shared", "kaiming / prelu"])
    assert len(set(table2.values())) == 3
    figure3 = run_colours(["xavier-fanin / relu", "kaiming / relu"])
    assert figure3 == {"xavier-fanin / relu": INIT_COLOURS["xavier-fanin"], "kaiming / relu": INIT_COLOURS["kaiming"]}


def test_a_watched_training_folder_reports_its_layer_by_step_maps(capsys, tmp_path):
    assert main(["train", "--depth", "6", "--width", "8", "--act", "prelu", "--epochs", "1", "--quiet",
                 "--watch-every", "5", "--out", str(tmp_path / "t"), "--format", "json"]) == 0
    watched = pd.read_csv(tmp_path / "t" / "kaiming" / "watch.csv")
    assert sorted(watched["step"].unique()) == [0, 5, 10, 15, 20]  # 23 steps of 8×8 digits at batch 64
    assert (tmp_path / "t" / "kaiming" / "watch.png").stat().st_size > 10_000
    capsys.readouterr()
    assert main(["report", "--out", str(tmp_path / "r"), "--from", str(tmp_path / "t")]) == 0
    _check_page(tmp_path / "r" / "index.html", figures=2)  # the curves and the run's watch maps
    assert main(["train", "--watch-every", "0", "--epochs", "1"]) == 2
    assert "--watch-every must be between 1 and" in capsys.readouterr().err
