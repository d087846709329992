"""Plotly figures for the pages, built from the DataFrames that db.queries and ui.tables return.

Scores are plotted in percent on a fixed 0-100 axis so charts of different runs compare at a
glance; step labels ("vanilla", "p", "p -> w", ...) are categories in strategy order.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from ui.tables import strategy_order

LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2), height=360)
PALETTE = px.colors.qualitative.Safe


def strategy_colors(strategies: pd.Series) -> dict[str, Any]:
    """Fixed colors per strategy, so a strategy looks the same in every chart of a page."""
    return {"color_discrete_map": {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(strategy_order(strategies))},
            "category_orders": {"strategy": strategy_order(strategies)}}


def step_timeline(steps: pd.DataFrame) -> go.Figure:
    """Validation and test score after every step of one run."""
    figure = go.Figure()
    for column, name, dash in (("val_score", "validation", "dot"), ("test_score", "test", "solid")):
        figure.add_scatter(x=steps["label"], y=100 * steps[column].astype(float), name=name, mode="lines+markers",
                           line=dict(dash=dash), hovertemplate="%{x}: %{y:.1f}%")
    figure.update_layout(title="Score after each step", yaxis=dict(title="score (%)", range=[0, 105]),
                         xaxis=dict(title="step", type="category"), **LAYOUT)
    return figure


def loss_curves(trainings: list[dict[str, Any]]) -> go.Figure:
    """Training loss of each LoRA job of a run (one per w step)."""
    figure = go.Figure()
    for job in trainings:
        points = job["losses"] or []
        figure.add_scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers",
                           name=f"step {job['step_index']} ({job['step_label']})")
    figure.update_layout(title="LoRA training loss", xaxis=dict(title="optimizer step", tickformat="d"),
                         yaxis_title="loss", **LAYOUT)
    return figure


def score_bars(cells: pd.DataFrame) -> go.Figure:
    """Mean test score per strategy, grouped by comparable setting, with 95% intervals as error bars."""
    data = cells.assign(above=cells["ci_high"] - cells["mean"], below=cells["mean"] - cells["ci_low"])
    figure = px.bar(data, x="setting", y="mean", color="strategy", error_y="above", error_y_minus="below",
                    barmode="group", hover_data={"ci_low": ":.1f", "ci_high": ":.1f", "seeds": True, "examples": True},
                    labels={"mean": "test score (%)", "setting": ""}, title="Test score by strategy (95% CI)",
                    **strategy_colors(cells["strategy"]))
    figure.update_layout(yaxis_range=[0, 105], **LAYOUT)
    return figure


def step_curves(scores: pd.DataFrame, strategies: pd.Series) -> go.Figure:
    """Mean test score after each step prefix, a line per strategy (a panel per `setting`, the
    group of comparable runs); `strategies` are all the page shows, so colors match its other charts."""
    data = (scores.assign(score=100 * scores["test_score"].astype(float))
            .groupby(["setting", "strategy", "index", "label"], as_index=False)["score"].mean())
    labels = data.sort_values(["index", "label"])["label"].drop_duplicates().tolist()
    colors = strategy_colors(strategies)
    figure = px.line(data, x="label", y="score", color="strategy", markers=True,
                     facet_col="setting" if data["setting"].nunique() > 1 else None,
                     color_discrete_map=colors["color_discrete_map"],
                     category_orders={"label": labels, **colors["category_orders"]},
                     labels={"label": "after step", "score": "test score (%)"}, title="Test score along the chain")
    figure.update_layout(yaxis_range=[0, 105], **LAYOUT)
    return figure

