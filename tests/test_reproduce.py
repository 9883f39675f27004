"""The paper's presets: what a heading says ran is what ran, and the quick runs differ from one another."""

import pandas as pd
import pytest

from initlab.reproduce import EXPERIMENTS, QUICK_EPOCHS, describe_run, first_epoch_below, format_comparison


def test_the_quick_form_of_each_experiment_is_short_and_distinct():
    quick = [experiment.quick() for experiment in EXPERIMENTS]
    assert [q.depth for q in quick] == [8, 6, 5] and all(q.epochs == QUICK_EPOCHS and len(q.seeds) == 1 for q in quick)
    assert [e.depth for e in EXPERIMENTS] == [30, 22, 14]  # the paper's depths in the full run
    assert describe_run(EXPERIMENTS[2]) == "depth 14, width 32, 10 epochs, lr 0.001, seeds 0, 1, 2, 3, 4"
    assert describe_run(quick[2]) == "depth 5, width 32, 3 epochs, lr 0.001, seed 0"


def test_the_first_epoch_below_half_chance_is_a_whole_epoch_or_never():
    history = pd.DataFrame({"epoch": [1, 2, 3], "val_error": [0.9, 0.4, 0.2]})
    assert first_epoch_below(history, 0.45) == 2.0
    assert pd.isna(first_epoch_below(history, 0.1))
    table = pd.DataFrame({"run": ["a", "b"], "val error": [0.2, 0.9], "first epoch below ½ chance error": [2.0, None]})
    text = format_comparison(table, epochs=3)
    assert "never in 3" in text and "NaN" not in text and " 2" in text.splitlines()[1]


class _Run:
    """A stand-in for a TrainResult: what the claims read."""

    def __init__(self, verdict, error, seed, epochs_to_half=1):
        self.verdict, self.final_val_error, self.config = verdict, error, {"seed": seed}
        self.history = pd.DataFrame({"epoch": [1, 2, 3], "val_error": [0.9 if epochs_to_half > e else 0.2
                                                                       for e in (1, 2, 3)]})


def _outcome(prelu_errors, relu_errors, xavier22="stalled"):
    seeds = range(len(relu_errors))
    return {
        "figure3": {"results": {"xavier-fanin / relu": [_Run("stalled", 0.9, 0)],
                                "kaiming / relu": [_Run("converged", 0.04, 0)]}},
        "figure2": {"results": {"xavier-fanin / relu": [_Run(xavier22, 0.9 if xavier22 == "stalled" else 0.1, 0, 9)],
                                "kaiming / relu": [_Run("converged", 0.03, 0, 1)]}},
        "table2": {"results": {"kaiming / relu": [_Run("converged", e, s) for s, e in zip(seeds, relu_errors)],
                               "kaiming / prelu": [_Run("converged", e, s) for s, e in zip(seeds, prelu_errors)],
                               "kaiming / prelu-shared": [_Run("converged", e, s) for s, e in zip(seeds, relu_errors)]}},
        "table1": pd.DataFrame({"position": [0, 1, 2], "channel_wise_mean": [0.25, 0.251, 0.252]}),
    }


def test_the_paired_interval_is_the_t_interval_of_the_per_seed_differences():
    from scipy import stats

    from initlab.reproduce import CONFIDENCE, paired_difference
    relu, prelu = [0.05, 0.04, 0.06, 0.05], [0.04, 0.035, 0.05, 0.045]
    result = paired_difference(_outcome(prelu, relu)["table2"]["results"], "kaiming / relu", "kaiming / prelu")
    differences = [p - r for p, r in zip(prelu, relu)]
    low, high = stats.t.interval(CONFIDENCE, len(differences) - 1, loc=sum(differences) / 4,
                                 scale=stats.sem(differences))
    assert result["mean"] == pytest.approx(-0.0075) and result["seeds"] == 4
    assert (result["low"], result["high"]) == (pytest.approx(low), pytest.approx(high))


def test_each_claim_says_whether_it_held_and_why():
    from initlab.reproduce import claims_table
    lower = claims_table(_outcome([0.03, 0.031, 0.029, 0.030], [0.05, 0.052, 0.049, 0.051])).set_index("claim")
    assert lower.loc["Figure 3", "held"] == "reproduced"
    assert lower.loc["Figure 2", "held"] == "partly" and "Xavier does not get going" in lower.loc["Figure 2", "reason"]
    assert lower.loc["Table 2 (channel-wise)", "held"] == "reproduced"
    assert lower.loc["Table 2 (channel-shared)", "held"] == "not reproduced"  # equal errors: not lower on average
    assert lower.loc["Table 1", "held"] == "not reproduced" and "barely move" in lower.loc["Table 1", "reason"]
    noisy = claims_table(_outcome([0.03, 0.06, 0.02, 0.05], [0.05, 0.04, 0.049, 0.051], xavier22="converged"))
    noisy = noisy.set_index("claim")
    assert noisy.loc["Figure 2", "held"] == "reproduced"
    assert noisy.loc["Table 2 (channel-wise)", "held"] == "partly"  # lower on average, the interval spans 0
