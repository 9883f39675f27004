"""The paper's presets: what a heading says ran is what ran, and the quick runs differ from one another."""

import pandas as pd

from initlab.reproduce import EXPERIMENTS, QUICK_EPOCHS, describe_run, first_epoch_below, format_comparison


def test_the_quick_form_of_each_experiment_is_short_and_distinct():
    quick = [experiment.quick() for experiment in EXPERIMENTS]
    assert [q.depth for q in quick] == [8, 6, 5] and all(q.epochs == QUICK_EPOCHS and len(q.seeds) == 1 for q in quick)
    assert [e.depth for e in EXPERIMENTS] == [30, 22, 14]  # the paper's depths in the full run
    assert describe_run(EXPERIMENTS[2]) == "depth 14, width 32, 10 epochs, lr 0.001, seeds 0, 1, 2"
    assert describe_run(quick[2]) == "depth 5, width 32, 3 epochs, lr 0.001, seed 0"


def test_the_first_epoch_below_half_chance_is_a_whole_epoch_or_never():
    history = pd.DataFrame({"epoch": [1, 2, 3], "val_error": [0.9, 0.4, 0.2]})
    assert first_epoch_below(history, 0.45) == 2.0
    assert pd.isna(first_epoch_below(history, 0.1))
    table = pd.DataFrame({"run": ["a", "b"], "val error": [0.2, 0.9], "first epoch below ½ chance error": [2.0, None]})
    text = format_comparison(table, epochs=3)
    assert "never in 3" in text and "NaN" not in text and " 2" in text.splitlines()[1]
