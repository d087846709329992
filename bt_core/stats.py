"""How sure a score or a difference of scores is: the statistics behind Compare and `show`.

A test split of 30 examples moves a score by 3.3 points per answer, and seeds change the
splits and the demos, so every number the product shows carries a 95% interval and every
difference between strategies is judged on the same (seed, test example) pairs. Scores are
per-example metric values in [0, 1]; results are fractions (the pages print percent).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 10_000
RNG_SEED = 0  # fixed, so a page shows the same interval and p-value on every reload
_CHUNK = 500  # bootstrap resamples drawn at once: bounds memory on GSM8K's 1,319 test examples

SeedScores = Mapping[int, Sequence[float]]  # seed -> per-example scores
PairedScores = Mapping[int, Mapping[int, float]]  # seed -> example index -> score


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class Score:
    """A strategy's test score over seeds."""

    mean: float  # of the seeds' means
    std: float  # over seeds (sample std; 0 for one seed)
    ci: Interval
    seeds: int
    examples: int  # scored test examples over all seeds


@dataclass(frozen=True)
class Delta:
    """a - b on their shared (seed, example) pairs."""

    mean: float
    ci: Interval  # paired bootstrap, examples resampled within seeds
    p_value: float
    test: str  # "McNemar (exact)" or "sign-flip permutation"
    pairs: int
    seeds: int

    @property
    def distinguishable(self) -> bool:
        """The interval excludes 0: the difference is larger than the test split's noise."""
        return self.ci.excludes_zero()


def wilson(scores: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Wilson score interval for the mean of scores in [0, 1].

    Unlike mean ± 1.96·se it stays inside [0, 1] and does not collapse to a point at 0% or
    100%, which small test splits reach often. Fractional scores count as fractional successes.
    """
    n = len(scores)
    if n == 0:
        raise ValueError("no scores")
    phat, z = float(np.mean(scores)), _z(confidence)
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def score_interval(by_seed: SeedScores, confidence: float = CONFIDENCE) -> Score:
    """Mean and std over seeds, and a 95% interval for the strategy's expected test score.

    With two or more seeds the interval is Student's t over the seeds' means (seeds vary the
    splits and the demos, the larger noise), widened at each end to at least the Wilson interval
    over all example scores: three seeds that happen to agree give a t-interval of width zero,
    though the test examples are still a sample. One seed gets the Wilson interval alone.
    """
    seeds = [np.asarray(scores, dtype=float) for scores in by_seed.values() if len(scores)]
    if not seeds:
        raise ValueError("no scores")
    means = np.array([s.mean() for s in seeds])
    pooled = np.concatenate(seeds)
    floor = wilson(pooled, confidence)
    mean, k = float(means.mean()), len(means)
    std = float(means.std(ddof=1)) if k > 1 else 0.0
    ci = floor
    if k > 1:
        half = stats.t.ppf((1 + confidence) / 2, k - 1) * std / math.sqrt(k)
        ci = Interval(max(0.0, min(mean - half, floor.low)), min(1.0, max(mean + half, floor.high)))
    return Score(mean, std, ci, k, len(pooled))


def paired_delta(a: PairedScores, b: PairedScores, confidence: float = CONFIDENCE,
                 resamples: int = RESAMPLES) -> Delta | None:
    """a - b on the (seed, example) pairs both scored; None when they share none.

    The interval is a percentile bootstrap that resamples examples within each seed (a seed's
    split is fixed, its examples are the sample). The p-value is McNemar's exact test (a
    binomial test on the discordant pairs) when every score is 0 or 1, as the paper's metrics
    are; otherwise a paired sign-flip permutation test of the mean difference, which, unlike
    Wilcoxon's signed-rank test, tests the same quantity the interval estimates.
    """
    diffs: list[np.ndarray] = []
    x: list[np.ndarray] = []
    y: list[np.ndarray] = []
    for seed in sorted(a.keys() & b.keys()):
        shared = sorted(a[seed].keys() & b[seed].keys())
        if shared:
            x.append(np.array([a[seed][i] for i in shared], dtype=float))
            y.append(np.array([b[seed][i] for i in shared], dtype=float))
            diffs.append(x[-1] - y[-1])
    if not diffs:
        return None
    d, x_all, y_all = np.concatenate(diffs), np.concatenate(x), np.concatenate(y)
    ci = _bootstrap(diffs, confidence, resamples)
    binary = bool(np.isin(x_all, (0, 1)).all() and np.isin(y_all, (0, 1)).all())
    p_value = mcnemar(x_all, y_all) if binary else sign_flip(d, resamples)
    return Delta(float(d.mean()), ci, p_value, "McNemar (exact)" if binary else "sign-flip permutation",
                 len(d), len(diffs))


def mcnemar(x: np.ndarray, y: np.ndarray) -> float:
    """Exact McNemar p-value for paired 0/1 outcomes: pairs where only one side passed are
    fair coin flips under 'no difference'."""
    only_x, only_y = int(np.sum((x == 1) & (y == 0))), int(np.sum((x == 0) & (y == 1)))
    if only_x + only_y == 0:
        return 1.0
    return float(stats.binomtest(only_x, only_x + only_y, 0.5).pvalue)


def sign_flip(diffs: np.ndarray, resamples: int = RESAMPLES) -> float:
    """Two-sided p-value of the mean paired difference, flipping each pair's sign at random
    (exact over all flips when there are fewer than `resamples`)."""
    if not np.any(diffs):
        return 1.0
    result = stats.permutation_test((diffs,), np.mean, permutation_type="samples", n_resamples=resamples,
                                    rng=np.random.default_rng(RNG_SEED))
    return float(result.pvalue)


def _bootstrap(diffs: list[np.ndarray], confidence: float, resamples: int) -> Interval:
    rng = np.random.default_rng(RNG_SEED)
    total = sum(len(d) for d in diffs)
    means = np.zeros(resamples)
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        sums = sum(d[rng.integers(0, len(d), size=(size, len(d)))].sum(axis=1) for d in diffs)
        means[start:start + size] = sums / total
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(low), float(high))


def min_detectable_difference(examples: int, seeds: int, power: float = 0.8,
                              confidence: float = CONFIDENCE) -> float:
    """Smallest accuracy difference a paired comparison on `examples` test examples x `seeds`
    seeds detects with this power at this confidence: (z_.975 + z_.8)·sqrt(0.5/(n·k)).

    Assumes 0/1 scores, independent pairs and a normal approximation, with the variance of a
    pair's difference at 0.5: about half the pairs discordant, near the worst case for two
    strategies of middling accuracy. Fewer discordant pairs detect smaller differences.
    """
    return (_z(confidence) + stats.norm.ppf(power)) * math.sqrt(0.5 / (examples * seeds))


def _z(confidence: float) -> float:
    return float(stats.norm.ppf((1 + confidence) / 2))
