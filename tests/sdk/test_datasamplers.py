"""Data samplers: the factory, `default` (identity) and `fedbalancer` (both halves, by hand)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flame_sdk.datasamplers import (
    SORTS,
    FedBalancerAggregator,
    FedBalancerTrainer,
    create_datasampler,
)

HP = {"epochs": 2, "batchSize": 2, "rounds": 5}
LOSSES = np.arange(1, 11) / 10  # sample i has loss (i + 1) / 10


def fb_trainer(**kwargs: object) -> FedBalancerTrainer:
    sampler = create_datasampler("fedbalancer", {"seed": 7, **kwargs}, HP).trainer
    assert isinstance(sampler, FedBalancerTrainer)
    return sampler


def fb_aggregator(**kwargs: object) -> FedBalancerAggregator:
    sampler = create_datasampler("fedbalancer", kwargs, HP).aggregator
    assert isinstance(sampler, FedBalancerAggregator)
    return sampler


# ---- factory -----------------------------------------------------------------------------------


def test_factory_names_unknown_sort_bad_kwarg_and_missing_hyperparameter() -> None:
    assert SORTS == ("default", "fedbalancer")
    with pytest.raises(ValueError, match="unknown datasampler sort 'nope'"):
        create_datasampler("nope", {}, HP)
    with pytest.raises(ValueError, match=r"'fedbalancer'.*w:"):
        create_datasampler("fedbalancer", {"w": 0}, HP)
    with pytest.raises(ValueError, match=r"'fedbalancer'.*p:"):
        create_datasampler("fedbalancer", {"p": 1.5}, HP)
    with pytest.raises(ValueError, match="bogus"):
        create_datasampler("fedbalancer", {"bogus": 1}, HP)
    with pytest.raises(ValueError, match="hyperparameter 'batchSize' is required"):
        create_datasampler("fedbalancer", {}, {"epochs": 1})
    with pytest.raises(ValueError, match="hyperparameter 'epochs' is required"):
        create_datasampler("fedbalancer", {}, None)
    with pytest.raises(ValueError, match="'epochs' must be a positive integer, got 0"):
        create_datasampler("fedbalancer", {}, {"epochs": 0, "batchSize": 4})


def test_fedbalancer_kwargs_default_to_the_recommended_values() -> None:
    sampler = create_datasampler("fedbalancer", None, {"epochs": 3, "batchSize": 8})
    trainer, aggregator = sampler.trainer, sampler.aggregator
    assert isinstance(trainer, FedBalancerTrainer)
    assert isinstance(aggregator, FedBalancerAggregator)
    assert (aggregator.w, aggregator.lss, aggregator.dss) == (20, 0.05, 0.05)
    assert (trainer.p, trainer.noise_factor) == (1.0, 0.0)
    assert (trainer.epochs, trainer.batch_size, aggregator.epochs) == (3, 8, 3)


# ---- default -----------------------------------------------------------------------------------


def test_default_is_identity_ignores_kwargs_and_sends_nothing() -> None:
    for sort in ("", "default"):
        sampler = create_datasampler(sort, {"epochs": 3, "anything": 1}, {})
        assert sampler.trainer.sort == sampler.aggregator.sort == "default"
        assert sampler.trainer.sample(5).tolist() == [0, 1, 2, 3, 4]
        sampler.trainer.record_losses([0], [1.0])
        sampler.trainer.record_batch_time(0.1)
        sampler.trainer.handle_metadata_from_aggregator({"loss_threshold": 1.0})
        assert sampler.trainer.get_metadata() == {}
        sampler.aggregator.handle_metadata_from_trainer({"x": 1}, "t1", 2.0)
        assert sampler.aggregator.get_metadata(3, ["t1"]) == {}


# ---- fedbalancer trainer -----------------------------------------------------------------------


def first_round(sampler: FedBalancerTrainer) -> None:
    """Round 1 over 10 samples: all selected, losses 0.1..1.0, batch times with mean 0.75."""
    assert sampler.sample(10).tolist() == list(range(10))
    sampler.record_losses(np.arange(10), LOSSES)
    for seconds in (0.5, 0.5, 1.0, 1.0):
        sampler.record_batch_time(seconds)


def test_trainer_first_round_takes_all_and_reports_exact_statistics() -> None:
    sampler = fb_trainer()
    first_round(sampler)
    meta = sampler.get_metadata()
    assert meta == {
        "loss_low": pytest.approx(0.1),
        # P80 of 0.1..1.0 (linear): position 0.8·9 = 7.2 -> 0.8 + 0.2·(0.9 - 0.8)
        "loss_high": pytest.approx(0.82),
        "selected_loss_sum": pytest.approx(5.5),
        "selected_len": 10,
        # (int(10 / 2) + 1) batches · mean 0.75 s
        "epoch_train_duration": pytest.approx(4.5),
    }
    assert json.loads(json.dumps(meta, allow_nan=False)) == meta


def split(selected: np.ndarray, threshold: float) -> tuple[int, int]:
    under = int(np.sum(LOSSES[selected] < threshold))
    return under, len(selected) - under


def test_trainer_later_round_splits_by_threshold_with_the_spec_counts() -> None:
    sampler = fb_trainer(p=0.5)
    first_round(sampler)
    # max_trainable = int((6 / (2 · 0.75) - 1) · 2 - 1) = 5 (round 1's mean batch time)
    sampler.handle_metadata_from_aggregator({"loss_threshold": 0.5, "deadline": 6.0})
    assert sampler.max_trainable() == 5
    # UT = {0..3} (loss < 0.5; sample 4's 0.5 is over), OT = {4..9}:
    # m = max(5, 6) = 6 -> int(6 · 0.5) = 3 UT + 3 OT
    selected = sampler.sample(10)
    assert len(set(selected.tolist())) == 6 and split(selected, 0.5) == (3, 3)
    assert selected.tolist() == sorted(selected.tolist())
    sampler.record_batch_time(2.0)
    sampler.record_batch_time(2.0)
    meta = sampler.get_metadata()
    assert meta["selected_len"] == 6
    assert meta["selected_loss_sum"] == pytest.approx(float(LOSSES[selected].sum()))
    assert meta["epoch_train_duration"] == pytest.approx((6 // 2 + 1) * 2.0)  # this round only
    # the mean batch time covers every round: 7 s / 6 batches, so
    # max_trainable = int((9.4 / (2 · 7/6) - 1) · 2 - 1) = int(5.06) = 5
    sampler.handle_metadata_from_aggregator({"loss_threshold": 0.65, "deadline": 9.4})
    assert sampler.max_trainable() == 5
    # UT = {0..5}, OT = {6..9}: m = max(5, 4) = 5 -> int(5 · 0.5) = 2 UT + 3 OT
    selected = sampler.sample(10)
    assert len(set(selected.tolist())) == 5 and split(selected, 0.65) == (2, 3)


def test_trainer_tops_a_short_set_up_from_the_other() -> None:
    sampler = fb_trainer(p=1.0)
    first_round(sampler)
    # max_trainable = int((8.25 / 1.5 - 1) · 2 - 1) = 8 > |OT| = 6: p = 1 wants 8 OT (Flame
    # raised here); all 6 OT are taken and 2 UT fill the rest
    sampler.handle_metadata_from_aggregator({"loss_threshold": 0.45, "deadline": 8.25})
    assert sampler.max_trainable() == 8
    assert split(sampler.sample(10), 0.45) == (2, 6)


def test_trainer_takes_everything_when_fast_enough_or_without_deadline() -> None:
    sampler = fb_trainer(p=0.5)
    first_round(sampler)
    sampler.handle_metadata_from_aggregator({"loss_threshold": 0.45, "deadline": None})
    assert sampler.sample(10).tolist() == list(range(10))
    sampler.handle_metadata_from_aggregator({"loss_threshold": 0.45, "deadline": 100.0})
    assert sampler.max_trainable() == 130 and sampler.sample(10).tolist() == list(range(10))


def test_trainer_selection_is_reproducible_per_seed_or_rng() -> None:
    picks = []
    for _ in range(2):
        sampler = fb_trainer(p=0.5)
        first_round(sampler)
        sampler.handle_metadata_from_aggregator({"loss_threshold": 0.45, "deadline": 6.0})
        picks.append(sampler.sample(10).tolist())
        picks.append(sampler.sample(10, np.random.default_rng(3)).tolist())
    assert picks[0] == picks[2] and picks[1] == picks[3]


def test_trainer_statistics_skip_unrecorded_losses_and_noise_is_seeded() -> None:
    sampler = fb_trainer()
    sampler.sample(4)
    sampler.record_losses([1, 3], [2.0, 4.0])
    sampler.record_batch_time(1.0)
    meta = sampler.get_metadata()
    # losses {2, 4}: P80 = 2 + 0.8 · 2; unrecorded samples add nothing to the sum
    assert meta["loss_low"] == 2.0 and meta["loss_high"] == pytest.approx(3.6)
    assert meta["selected_loss_sum"] == 6.0 and meta["selected_len"] == 4
    # an unknown loss counts as over the threshold
    sampler.handle_metadata_from_aggregator({"loss_threshold": 3.0, "deadline": 2.0})
    assert sampler.max_trainable() == -1  # int((2 / 2 - 1) · 2 - 1); m = max(-1, |OT| = 3)
    assert sampler.sample(4).tolist() == [0, 2, 3]

    noisy = []
    for _ in range(2):
        sampler = fb_trainer(noise_factor=0.5)
        first_round(sampler)
        noisy.append(sampler.get_metadata())
    assert noisy[0] == noisy[1]
    assert noisy[0]["loss_low"] != pytest.approx(0.1)
    assert noisy[0]["loss_high"] != pytest.approx(0.82)


def test_trainer_errors_name_the_missing_call_or_bad_input() -> None:
    sampler = fb_trainer()
    with pytest.raises(RuntimeError, match=r"call sample\(\) before record_losses"):
        sampler.record_losses([0], [1.0])
    sampler.sample(3)
    with pytest.raises(RuntimeError, match="no per-sample loss recorded"):
        sampler.get_metadata()
    sampler.record_losses([0, 1, 2], [1.0, 2.0, 3.0])
    with pytest.raises(RuntimeError, match="no batch time recorded"):
        sampler.get_metadata()
    with pytest.raises(ValueError, match="2 indices but 1 losses"):
        sampler.record_losses([0, 1], [1.0])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        sampler.record_losses([3], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        sampler.record_losses([0], [float("nan")])
    with pytest.raises(ValueError, match="had 3 samples, now 4"):
        sampler.sample(4)
    with pytest.raises(ValueError, match="lacks 'deadline'"):
        sampler.handle_metadata_from_aggregator({"loss_threshold": 0.1})
    with pytest.raises(ValueError, match="'loss_threshold' must be a finite number"):
        sampler.handle_metadata_from_aggregator({"loss_threshold": "x", "deadline": None})


# ---- fedbalancer aggregator --------------------------------------------------------------------


def report(
    aggregator: FedBalancerAggregator,
    end: str,
    duration: float | None,
    epoch_time: float,
    low: float = 0.0,
    high: float = 1.0,
    loss_sum: float = 1.0,
    length: int = 1,
) -> None:
    meta = {
        "loss_low": low,
        "loss_high": high,
        "selected_loss_sum": loss_sum,
        "selected_len": length,
        "epoch_train_duration": epoch_time,
    }
    aggregator.handle_metadata_from_trainer(meta, end, duration)


def test_aggregator_threshold_and_deadline_on_a_hand_checked_round() -> None:
    aggregator = fb_aggregator()  # epochs = 2, ltr = 0, ddlr = 1
    assert aggregator.get_metadata(1, ["a", "b", "c"]) == {"loss_threshold": 0.0, "deadline": None}
    # comm = duration - 2 · epoch time: a 3, b 3, c 20
    report(aggregator, "a", 5.0, 1.0, low=0.2, high=1.0)
    report(aggregator, "b", 6.0, 1.5, low=0.4, high=2.0)
    report(aggregator, "c", 40.0, 10.0, low=0.3, high=3.0)
    # round 1 always sends the initial values; the reports wait for round 2
    assert aggregator.get_metadata(1, ["a", "b", "c"]) == {"loss_threshold": 0.0, "deadline": None}
    meta = aggregator.get_metadata(2, ["a", "b", "c"])
    # one epoch: a 4, b 4.5, c 30 -> T = 4: 1/4, 5: 2/5, 30: 3/30 -> D_1 = 5
    # two epochs: a 5, b 6, c 40 -> 5: 1/5, 6: 2/6, 40: 3/40 -> D_E = 6; ddlr 1 -> D_E
    # LT = min(low) + (mean(high) - min(low)) · ltr = 0.2 + (2.0 - 0.2) · 0 = 0.2
    assert meta == {"loss_threshold": pytest.approx(0.2), "deadline": 6.0}
    assert json.loads(json.dumps(meta, allow_nan=False)) == meta
    # only the selected ends count: a alone -> D_E = 5
    assert aggregator.get_metadata(3, ["a", "z"])["deadline"] == 5.0
    assert aggregator.get_metadata(4, ["z"])["deadline"] == 5.0  # no timings: kept


def test_aggregator_peak_deadline_takes_the_smallest_on_ties() -> None:
    aggregator = fb_aggregator()
    report(aggregator, "a", 2.0, 0.0)
    report(aggregator, "b", 4.0, 0.0)
    # T = 2: 1/2, T = 4: 2/4 -> 2
    assert aggregator.get_metadata(2, ["a", "b"])["deadline"] == 2.0


def drive(aggregator: FedBalancerAggregator, round: int, mean_loss: float) -> dict[str, object]:
    """One round: the single end `a` reports (deadline stays 5: comm 5, epoch time 0)."""
    report(aggregator, "a", 5.0, 0.0, low=0.0, high=1.0, loss_sum=mean_loss * 4, length=4)
    return aggregator.get_metadata(round + 1, ["a"])


def test_aggregator_ratios_follow_the_benefit_windows() -> None:
    aggregator = fb_aggregator(w=2, lss=0.1, dss=0.25)
    aggregator.get_metadata(1, ["a"])
    assert drive(aggregator, 1, 1.0)["deadline"] == 5.0  # round 1 had no deadline: no benefit
    # benefits (mean loss / 5): 0.2, 0.2 then 0.1, 0.1 -> the window mean dropped
    for round, loss in ((2, 1.0), (3, 1.0), (4, 0.5)):
        drive(aggregator, round, loss)
        assert (aggregator.ltr, aggregator.ddlr) == (0.0, 1.0)
    meta = drive(aggregator, 5, 0.5)
    assert (aggregator.ltr, aggregator.ddlr) == pytest.approx((0.1, 0.75))
    assert meta["loss_threshold"] == pytest.approx(0.1)  # 0 + (1 - 0) · 0.1, new ltr applied
    assert meta["deadline"] == 5.0
    # then 0.4, 0.4 -> the window mean rose: back the other way
    drive(aggregator, 6, 2.0)
    assert (aggregator.ltr, aggregator.ddlr) == pytest.approx((0.1, 0.75))
    drive(aggregator, 7, 2.0)
    assert (aggregator.ltr, aggregator.ddlr) == pytest.approx((0.0, 1.0))


def test_aggregator_ratios_stay_within_bounds() -> None:
    aggregator = fb_aggregator(w=1, lss=0.6, dss=0.6)
    aggregator.get_metadata(1, ["a"])
    drive(aggregator, 1, 1.0)
    drive(aggregator, 2, 3.0)  # benefits 0.6: first window only
    drive(aggregator, 3, 2.0)  # 0.4 < 0.6: dropped
    assert (aggregator.ltr, aggregator.ddlr) == pytest.approx((0.6, 0.4))
    drive(aggregator, 4, 1.0)  # dropped again: clamped
    assert (aggregator.ltr, aggregator.ddlr) == (1.0, 0.0)
    drive(aggregator, 5, 4.0)
    drive(aggregator, 6, 5.0)  # rose twice
    assert (aggregator.ltr, aggregator.ddlr) == pytest.approx((0.0, 1.0))


def test_aggregator_keeps_the_last_five_timings_per_end() -> None:
    aggregator = fb_aggregator()
    for duration in range(1, 8):  # epoch time 0: comm = duration
        report(aggregator, "a", float(duration), 0.0)
    # mean of the last five comm times 3..7 = 5 (all seven would give 4)
    assert aggregator.get_metadata(2, ["a"])["deadline"] == 5.0


def test_aggregator_unknown_duration_reuses_the_ends_last_one() -> None:
    aggregator = fb_aggregator()
    report(aggregator, "b", None, 0.0)  # no history: no timing recorded
    assert aggregator.get_metadata(2, ["b"])["deadline"] is None
    report(aggregator, "b", 8.0, 0.0)
    report(aggregator, "b", 12.0, 0.0)
    report(aggregator, "b", None, 1.0)  # the last duration, 12, again: comm 12 - 2 · 1 = 10
    # comm mean (8 + 12 + 10) / 3 = 10, epoch mean 1/3: D_1 = ceil(10.33) = D_E = ceil(10.67)
    assert aggregator.get_metadata(3, ["b"])["deadline"] == 11.0


def test_aggregator_rejects_malformed_trainer_metadata() -> None:
    aggregator = fb_aggregator()
    good = {
        "loss_low": 0.1,
        "loss_high": 0.9,
        "selected_loss_sum": 3.0,
        "selected_len": 5,
        "epoch_train_duration": 1.0,
    }
    with pytest.raises(ValueError, match="'loss_high' must be a finite number, got None"):
        aggregator.handle_metadata_from_trainer({**good, "loss_high": None}, "a", 1.0)
    with pytest.raises(ValueError, match="'selected_len' must be an integer"):
        aggregator.handle_metadata_from_trainer({**good, "selected_len": 2.5}, "a", 1.0)
    missing = {k: v for k, v in good.items() if k != "epoch_train_duration"}
    with pytest.raises(ValueError, match="lacks 'epoch_train_duration'"):
        aggregator.handle_metadata_from_trainer(missing, "a", 1.0)
    with pytest.raises(ValueError, match="bad round duration"):
        aggregator.handle_metadata_from_trainer(good, "a", -1.0)
