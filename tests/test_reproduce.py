"""The paper's presets: what a heading says ran is what ran, and the quick runs differ from one another."""

import pandas as pd
import pytest

from initlab.reproduce import EXPERIMENTS, QUICK_EPOCHS, describe_run, first_epoch_below, format_comparison


def test_the_quick_form_of_each_experiment_is_short_and_distinct():
    quick = [experiment.quick() for experiment in EXPERIMENTS]
    assert [q.depth for q in quick] == [8, 6, 5, 4] and all(q.epochs == QUICK_EPOCHS and len(q.seeds) == 1
                                                           for q in quick)
    assert [e.depth for e in EXPERIMENTS] == [30, 22, 14, 14]  # the paper's depths in the full run
    assert describe_run(EXPERIMENTS[2]) == "depth 14, width 32, 10 epochs, lr 0.001 step, seeds 0, 1, 2, 3, 4"
    assert describe_run(quick[2]) == "depth 5, width 32, 3 epochs, lr 0.001 step, seed 0"


def test_the_first_epoch_below_half_chance_is_a_whole_epoch_or_never():
    history = pd.DataFrame({"epoch": [1, 2, 3], "val_error": [0.9, 0.4, 0.2]})
    assert first_epoch_below(history, 0.45) == 2.0
    assert pd.isna(first_epoch_below(history, 0.1))
    table = pd.DataFrame({"run": ["a", "b"], "val error": [0.2, 0.9], "first epoch below ½ chance error": [2.0, None]})
    text = format_comparison(table, epochs=3)
    assert "never in 3" in text and "NaN" not in text and " 2" in text.splitlines()[1]


class _Run:
    """A stand-in for a TrainResult: what the claims read."""

    def __init__(self, verdict, error, seed, epochs_to_half=1, slopes=()):
        self.verdict, self.final_val_error, self.config = verdict, error, {"seed": seed}
        self.slopes = pd.DataFrame({"epoch": 3, "layer": [f"{i}" for i in range(len(slopes))],
                                    "position": range(len(slopes)), "channels": 1, "slope_mean": list(slopes),
                                    "slope_std": 0.0, "slope_min": list(slopes), "slope_max": list(slopes)})
        self.history = pd.DataFrame({"epoch": [1, 2, 3], "val_error": [0.9 if epochs_to_half > e else 0.2
                                                                       for e in (1, 2, 3)]})


def _outcome(prelu_errors, relu_errors, xavier22="stalled", shared=(0.52, 0.36, 0.44)):
    seeds = range(len(relu_errors))
    return {
        "figure3": {"results": {"xavier-fanin / relu": [_Run("stalled", 0.9, 0)],
                                "kaiming / relu": [_Run("converged", 0.04, 0)]}},
        "figure2": {"results": {"xavier-fanin / relu": [_Run(xavier22, 0.9 if xavier22 == "stalled" else 0.1, 0, 9)],
                                "kaiming / relu": [_Run("converged", 0.03, 0, 1)]}},
        "table2": {"results": {"kaiming / relu": [_Run("converged", e, s) for s, e in zip(seeds, relu_errors)],
                               "kaiming / prelu": [_Run("converged", e, s) for s, e in zip(seeds, prelu_errors)],
                               "kaiming / prelu-shared": [_Run("converged", e, s) for s, e in zip(seeds, relu_errors)]}},
        "table1": {"results": {"kaiming / prelu-shared": [_Run("converged", 0.1, s, slopes=shared) for s in (0, 1)],
                               "kaiming / prelu": [_Run("converged", 0.1, 0, slopes=(0.25, 0.251, 0.252))]}},
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
    assert lower.loc["Table 1 (channel-wise)", "held"] == "not reproduced"
    assert "barely move" in lower.loc["Table 1 (channel-wise)", "reason"]
    assert lower.loc["Table 1 (channel-shared)", "held"] == "reproduced"
    assert lower.loc["Table 1 (channel-shared)", "measured"] == "first layer 0.520, 0.520; largest other 0.440, 0.440 (2 seeds)"
    noisy = claims_table(_outcome([0.03, 0.06, 0.02, 0.05], [0.05, 0.04, 0.049, 0.051], xavier22="converged"))
    noisy = noisy.set_index("claim")
    assert noisy.loc["Table 1 (channel-shared)", "held"] == "reproduced"
    assert noisy.loc["Figure 2", "held"] == "reproduced"
    assert noisy.loc["Table 2 (channel-wise)", "held"] == "partly"  # lower on average, the interval spans 0


def test_figures_2_and_3_train_on_the_papers_input_scale_with_a_constant_lr():
    from dataclasses import replace

    from initlab.data import DatasetError, load_dataset, scaled_inputs
    from initlab.reproduce import PAPER_INPUT_SCALE, run_experiment
    dataset = load_dataset("digits", seed=0)
    scaled = scaled_inputs(dataset, PAPER_INPUT_SCALE)
    assert float(scaled.train_x.std()) == pytest.approx(30 * float(dataset.train_x.std()), rel=1e-6)
    assert scaled_inputs(dataset, 1.0) is dataset
    with pytest.raises(DatasetError, match="positive"):
        scaled_inputs(dataset, -1.0)
    assert [(e.input_scale, e.schedule) for e in EXPERIMENTS] == [(30.0, "constant"), (30.0, "constant"), (1.0, "step"),
                                                                  (1.0, "step")]
    experiment = replace(EXPERIMENTS[1].quick(), epochs=2, depth=4)
    results = run_experiment(experiment, dataset)
    for (run,) in results.values():
        assert run.config["input_scale"] == 30.0
        assert (run.history["lr"] == experiment.lr).all() and (run.history["lr_end"] == experiment.lr).all()


def test_figure2_over_seeds_says_in_how_many_he_starts_earlier():
    from initlab.reproduce import claims_table
    outcome = _outcome([0.03], [0.05], shared=(0.3, 0.5, 0.4))
    outcome["figure2"]["results"] = {
        "xavier-fanin / relu": [_Run("converged", 0.1, s, e) for s, e in ((0, 3), (1, 3), (2, 1))],
        "kaiming / relu": [_Run("converged", 0.05, s, 2) for s in (0, 1, 2)]}
    claims = claims_table(outcome).set_index("claim")
    assert claims.loc["Figure 2", "held"] == "partly"
    assert claims.loc["Figure 2", "reason"] == "both converge; He earlier in 2 of 3 seeds"
    assert claims.loc["Figure 2", "measured"].endswith("first epoch below ½ chance error: He 2, 2, 2, Xavier 3, 3, 1")
    assert claims.loc["Table 1 (channel-shared)", "held"] == "not reproduced"  # another layer's is larger


def test_figure2_reason_counts_the_xavier_runs_that_converged():
    from initlab.reproduce import _figure2_reason
    assert _figure2_reason(True, [True, False, True], [True, True, True]) == \
        "He converges and starts earlier in every seed; Xavier converges in 2 of 3"
    assert _figure2_reason(True, [True, True, True], [True, True, True]) == "both converge, He earlier in every seed"
    assert _figure2_reason(True, [False, False], [True, True]).startswith("He converges first, but Xavier does not")
    assert _figure2_reason(False, [True], [False]) == "He does not converge"
