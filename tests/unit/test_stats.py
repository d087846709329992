"""bt_core.stats against scipy's own results and hand-computed values on fixed data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bt_core.stats import Interval, mcnemar, min_detectable_difference, paired_delta, score_interval, sign_flip, wilson


def test_wilson_matches_scipys_binomial_interval():
    for successes, n in ((0, 15), (7, 15), (15, 15), (21, 30), (1, 50)):
        scores = [1.0] * successes + [0.0] * (n - successes)
        expected = stats.binomtest(successes, n).proportion_ci(0.95, method="wilson")
        assert (wilson(scores).low, wilson(scores).high) == pytest.approx((expected.low, expected.high))


def test_one_seed_gets_the_wilson_interval():
    score = score_interval({0: [1, 1, 0, 1, 0, 1, 1, 1, 0, 1]})
    assert score.mean == pytest.approx(0.7) and score.std == 0 and (score.seeds, score.examples) == (1, 10)
    assert score.ci == wilson([1, 1, 0, 1, 0, 1, 1, 1, 0, 1])


def test_seeds_get_a_t_interval_over_their_means():
    by_seed = {0: [1] * 20 + [0] * 10, 1: [1] * 10 + [0] * 20, 2: [1] * 27 + [0] * 3}  # 2/3, 1/3, 9/10
    means = np.array([2 / 3, 1 / 3, 0.9])
    expected = stats.t.interval(0.95, 2, loc=means.mean(), scale=stats.sem(means))
    score = score_interval(by_seed)
    assert score.mean == pytest.approx(means.mean()) and score.std == pytest.approx(means.std(ddof=1))
    assert score.ci.low == pytest.approx(max(0, expected[0])) and score.ci.high == pytest.approx(min(1, expected[1]))
    assert (score.seeds, score.examples) == (3, 90)


def test_agreeing_seeds_are_floored_by_the_wilson_interval_of_all_examples():
    by_seed = {seed: [1] * 15 + [0] * 15 for seed in range(3)}  # std 0: the t-interval has width 0
    score = score_interval(by_seed)
    assert score.std == 0 and score.ci == wilson([1] * 45 + [0] * 45)


def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs():
    x = np.array([1] * 12 + [0] * 3 + [1] * 20 + [0] * 15)  # 12 pass only under x, 3 only under y
    y = np.array([0] * 12 + [1] * 3 + [1] * 20 + [0] * 15)
    assert mcnemar(x, y) == pytest.approx(stats.binomtest(12, 15, 0.5).pvalue)
    assert mcnemar(x, y) == pytest.approx(2 * sum(stats.binom.pmf(k, 15, 0.5) for k in range(12, 16)))
    assert mcnemar(x, x) == 1.0


def test_sign_flip_is_exact_on_few_pairs():
    diffs = np.array([0.5, 0.25, 0.75, -0.25, 0.5, 1.0, 0.25])  # 2^7 flips, all enumerated
    extreme = sum(abs(np.mean(diffs * signs)) >= np.mean(diffs) - 1e-12
                  for signs in np.array(np.meshgrid(*[[-1, 1]] * 7)).T.reshape(-1, 7))
    assert sign_flip(diffs) == pytest.approx(extreme / 2 ** 7)
    assert sign_flip(np.zeros(5)) == 1.0


def paired(rows: dict[int, list[float]]) -> dict[int, dict[int, float]]:
    return {seed: dict(enumerate(scores)) for seed, scores in rows.items()}


def test_paired_delta_of_a_clear_win_is_distinguishable():
    better = paired({0: [1] * 25 + [0] * 5, 1: [1] * 24 + [0] * 6})
    worse = paired({0: [1] * 10 + [0] * 20, 1: [0] * 20 + [1] * 10})
    delta = paired_delta(better, worse)
    assert delta.mean == pytest.approx((15 + 20 - 6) / 60)  # seed 0: 15 wins; seed 1: 20 wins, 6 losses
    assert delta.test == "McNemar (exact)" and (delta.pairs, delta.seeds) == (60, 2)
    assert delta.ci.low < delta.mean < delta.ci.high and delta.distinguishable
    assert delta.p_value < 0.01
    assert paired_delta(better, worse) == delta  # a fixed seed: the same interval every time


def test_paired_delta_uses_only_shared_pairs_and_can_be_within_noise():
    a = paired({0: [1, 0, 1, 0, 1, 0, 1, 0], 1: [1, 1]})
    b = {0: {i: s for i, s in enumerate([0, 1, 1, 0, 0, 1, 1, 0])}, 2: {0: 1.0}}  # seed 1 and 2 not shared
    delta = paired_delta(a, b)
    assert (delta.pairs, delta.seeds, delta.mean) == (8, 1, 0.0)
    assert not delta.distinguishable and delta.p_value == 1.0
    assert paired_delta(a, {3: {0: 1.0}}) is None


def test_bootstrap_interval_agrees_with_the_normal_approximation_on_many_pairs():
    rng = np.random.default_rng(1)
    a = paired({s: list((rng.random(400) < 0.6).astype(float)) for s in range(3)})
    b = paired({s: list((rng.random(400) < 0.5).astype(float)) for s in range(3)})
    delta = paired_delta(a, b)
    d = np.array([a[s][i] - b[s][i] for s in a for i in a[s]], dtype=float)
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    assert delta.ci.low == pytest.approx(d.mean() - half, abs=0.01)
    assert delta.ci.high == pytest.approx(d.mean() + half, abs=0.01)


def test_non_binary_scores_get_the_sign_flip_test():
    a = paired({0: [0.5, 0.75, 1.0, 0.25]})
    b = paired({0: [0.25, 0.5, 0.5, 0.25]})
    delta = paired_delta(a, b)
    assert delta.test == "sign-flip permutation"
    assert delta.p_value == pytest.approx(sign_flip(np.array([0.25, 0.25, 0.5, 0.0])))


def test_minimum_detectable_difference_for_iris():
    assert min_detectable_difference(30, 3) == pytest.approx(0.2088, abs=1e-4)  # default budget, 3 seeds
    assert min_detectable_difference(15, 3) == pytest.approx(0.2953, abs=1e-4)  # smoke
    assert min_detectable_difference(30, 1) == pytest.approx(np.sqrt(3) * min_detectable_difference(30, 3))


def test_interval_excludes_zero_only_when_it_lies_on_one_side():
    assert Interval(0.01, 0.2).excludes_zero() and Interval(-0.3, -0.1).excludes_zero()
    assert not Interval(-0.01, 0.2).excludes_zero()
