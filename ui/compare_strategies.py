"""The Compare page's tables: strategies of like runs side by side, each number with its interval.

Runs compare only within a group: same task, model, budget, backend and overridden settings
(bt_core.serve.config.overridden_settings), since a strategy that won with other settings says
nothing about this one. A cell is a strategy's final-program test score over seeds; a delta
pairs two strategies on the same seed's same test examples. No Streamlit here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from bt_core.serve.config import overridden_settings, shown_backend
from bt_core.stats import Delta, PairedScores, paired_delta, score_interval
from ui.tables import strategy_order

BASELINES = ("vanilla", "p", "w")
BEST_STYLE = "background-color: rgba(33, 195, 84, 0.18); font-weight: 600"
GROUP = ["task", "model", "budget", "backend", "settings"]
DELTA_COLUMNS = [*GROUP, "strategy", "versus", "delta", "ci_low", "ci_high", "p_value", "test", "pairs", "seeds",
                 "verdict", "untrained_w", "setting"]
CSV_DELTA = {"delta": "", "ci_low": " CI low", "ci_high": " CI high", "p_value": " p", "verdict": " verdict"}


@dataclass
class Comparison:
    cells: pd.DataFrame  # a row per group x strategy: mean, std, ci_low, ci_high (%), seeds, examples, setting
    deltas: pd.DataFrame  # a row per group x strategy x baseline (vanilla, p, w): points, CI, p, verdict
    scores: dict[tuple[Any, ...], PairedScores] = field(repr=False)  # (*group, strategy) -> seed -> example -> score
    duplicates: int = 0  # runs left out: a newer run of the same group, strategy and seed stands for them


def run_groups(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with their group's columns, and `setting`, the group as one label for charts. A
    run's backend is what it ran on (its worker's resolution), not what it requested."""
    settings = [overridden_settings(config) for config in runs["config"]]
    grouped = runs.assign(backend=[shown_backend(b, c) for b, c in zip(runs["backend"], runs["config"])],
                          settings=[", ".join(f"{k}={v}" for k, v in sorted(s.items())) for s in settings])
    return grouped.assign(setting=_setting(grouped))


def _setting(frame: pd.DataFrame) -> list[str]:
    return [_label(values) for values in frame[GROUP].itertuples(False)]


def _label(group: tuple[Any, ...]) -> str:
    """A group as one label: "iris · smollm2-135m · default · hf · lora.epochs=5"."""
    return " · ".join(filter(None, group))


def compare(runs: pd.DataFrame, example_scores: pd.DataFrame, untrained: pd.DataFrame) -> Comparison:
    """Cells and deltas of the finished runs (queries.compare_runs, test_example_scores and
    untrained_w_steps). A group without vanilla runs gets its runs' step 0 per seed instead:
    the same unoptimized program on the same seed's test split."""
    done = run_groups(runs[runs["status"] == "done"]).sort_values("id")
    kept = done.drop_duplicates([*GROUP, "strategy", "seed"], keep="last")
    meta = kept.set_index("id")[[*GROUP, "strategy", "seed"]]
    final = example_scores[example_scores["final"].astype(bool) & example_scores["run_id"].isin(meta.index)]
    rows = final.join(meta, on="run_id")
    measured = set(kept.loc[kept["strategy"] == "vanilla", [*GROUP, "seed"]].itertuples(False))
    first = kept.drop_duplicates([*GROUP, "seed"]).set_index("id")[[*GROUP, "seed"]]
    step0 = example_scores[(example_scores["step_index"] == 0) & example_scores["run_id"].isin(first.index)]
    step0 = step0.join(first, on="run_id").assign(strategy="vanilla")
    step0 = step0[[key not in measured for key in step0[[*GROUP, "seed"]].itertuples(False)]]
    rows = pd.concat([rows, step0], ignore_index=True)

    flagged = kept[kept["id"].isin(untrained["run_id"])].groupby([*GROUP, "strategy"])["seed"].nunique()
    scores = {key: {seed: dict(zip(part["example_index"], part["score"])) for seed, part in frame.groupby("seed")}
              for key, frame in rows.groupby([*GROUP, "strategy"])}
    cells = pd.DataFrame([_cell(key, by_seed, int(flagged.get(key, 0))) for key, by_seed in scores.items()],
                         columns=[*GROUP, "strategy", "mean", "std", "ci_low", "ci_high", "seeds", "examples",
                                  "untrained_w_seeds"])
    cells = _in_strategy_order(cells.assign(setting=_setting(cells)))
    comparison = Comparison(cells, pd.DataFrame(), scores, len(done) - len(kept))
    comparison.deltas = _in_strategy_order(pd.DataFrame(
        [row for base in BASELINES for strategy in cells["strategy"].unique() if _against(strategy, base)
         for row in _delta_rows(comparison, strategy, base)], columns=DELTA_COLUMNS))
    return comparison


def _against(strategy: str, base: str) -> bool:
    """Each baseline pair once: p - vanilla, w - vanilla, w - p, not also their negations."""
    return strategy != base and not (strategy in BASELINES and BASELINES.index(strategy) < BASELINES.index(base))


def _cell(key: tuple[Any, ...], by_seed: PairedScores, untrained: int) -> list[Any]:
    score = score_interval({seed: list(examples.values()) for seed, examples in by_seed.items()})
    return [*key, 100 * score.mean, 100 * score.std, 100 * score.ci.low, 100 * score.ci.high, score.seeds,
            score.examples // score.seeds, untrained]


def pair_deltas(comparison: Comparison, strategy: str, versus: str) -> pd.DataFrame:
    """`strategy` - `versus` in each group that has both, paired on shared seeds and examples."""
    return pd.DataFrame(_delta_rows(comparison, strategy, versus), columns=DELTA_COLUMNS)


def _delta_rows(comparison: Comparison, strategy: str, versus: str) -> list[list[Any]]:
    rows = []
    for key in comparison.scores:
        group, name = key[:-1], key[-1]
        other = (*group, versus)
        if name == strategy and other in comparison.scores:
            delta = paired_delta(comparison.scores[key], comparison.scores[other])
            if delta is not None:
                rows.append([*group, strategy, versus, *_delta_values(delta),
                             _untrained_note(comparison.cells, group, (strategy, versus)), _label(group)])
    return rows


def _delta_values(delta: Delta) -> list[Any]:
    return [100 * delta.mean, 100 * delta.ci.low, 100 * delta.ci.high, delta.p_value, delta.test, delta.pairs,
            delta.seeds, "distinguishable" if delta.distinguishable else "within noise"]


def _untrained_note(cells: pd.DataFrame, group: tuple[Any, ...], strategies: tuple[str, str]) -> str:
    """"w: 2 of 3 seeds trained nothing" for each side whose w steps fine-tuned nothing."""
    index = cells.set_index([*GROUP, "strategy"])
    notes = []
    for strategy in strategies:
        cell = index.loc[(*group, strategy)]
        if cell["untrained_w_seeds"]:
            notes.append(f"{strategy}: {int(cell['untrained_w_seeds'])} of {int(cell['seeds'])} seeds trained nothing")
    return "; ".join(notes)


def _in_strategy_order(frame: pd.DataFrame) -> pd.DataFrame:
    rank = {s: i for i, s in enumerate(strategy_order(frame["strategy"]))}
    columns = [c for c in (*GROUP, "strategy", "versus") if c in frame]
    return frame.sort_values(columns, key=lambda c: c.map(rank) if c.name in ("strategy", "versus") else c,
                             kind="stable").reset_index(drop=True)


def cell_text(row: pd.Series) -> str:
    """"57.3 ± 4.1 [45.0, 68.2] 30×3": mean ± std over seeds, 95% CI, test examples × seeds;
    † when some seed's w step trained nothing."""
    text = f"{row['mean']:.1f} ± {row['std']:.1f} [{row['ci_low']:.1f}, {row['ci_high']:.1f}] " \
           f"{row['examples']}×{row['seeds']}"
    return text + (" †" if row["untrained_w_seeds"] else "")


def grid(cells: pd.DataFrame) -> Styler:
    """Table 1's shape: a row per group, a column per strategy, the best mean highlighted."""
    order = strategy_order(cells["strategy"])
    texts = cells.assign(cell=cells.apply(cell_text, axis=1))
    table = texts.pivot(index=GROUP, columns="strategy", values="cell")[order].fillna("—")
    means = cells.pivot(index=GROUP, columns="strategy", values="mean")[order]
    best = means.eq(means.max(axis=1), axis=0).to_numpy()
    table.columns.name = None
    table, mask = table.reset_index(), np.hstack([np.zeros((len(table), len(GROUP)), bool), best])
    return table.style.apply(lambda _: np.where(mask, BEST_STYLE, ""), axis=None)


def csv_table(comparison: Comparison) -> pd.DataFrame:
    """A row per cell with its deltas against vanilla, p and w beside it, for the download."""
    table = comparison.cells
    for base in BASELINES:
        names = {column: f"Δ {base}{suffix}" for column, suffix in CSV_DELTA.items()}
        against = comparison.deltas.loc[comparison.deltas["versus"] == base, [*GROUP, "strategy", *names]]
        table = table.merge(against.rename(columns=names), on=[*GROUP, "strategy"], how="left")
    return table
