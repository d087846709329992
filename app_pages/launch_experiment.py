"""Launch: choose a grid of task x models x strategies x seeds and queue it as one experiment."""

from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from bt_core.lm.models import EMBEDDED, REGISTRY, resolve_model
from bt_core.optimizers.better_together import lm_calls_at_most
from bt_core.serve.config import BUDGETS, resolve_config
from bt_core.serve.queue import launch_experiment, parse_seeds
from bt_core.stats import min_detectable_difference
from bt_core.strategy import parse_strategy
from bt_core.tasks import get_task, task_names
from db import queries
from db.limits import EXPERIMENT_NAME_MAX
from ui.common import PAGES, sessions
from ui.launch_experiment import advanced_settings
from ui.tables import STRATEGY_ORDER, duration

CPU_SECONDS_PER_CALL = 0.5  # the embedded model on a 2-core CPU, until this machine has history
errors: list[str] = []


def check(validate: Callable[[str], Any], value: str) -> Any:
    """validate(value), or None with its message kept for display beside the launch button."""
    try:
        return validate(value)
    except ValueError as exc:
        errors.append(str(exc))
        return None


db = sessions()
st.title("Launch an experiment")
st.caption("Every combination of the choices below becomes one queued run; the worker runs them in order.")
form, summary = st.columns([3, 2], gap="large")
with form:
    tasks = task_names()
    task = st.selectbox("Task", tasks, index=tasks.index("iris") if "iris" in tasks else 0,  # the quickest on CPU
                        format_func=lambda t: f"{t} — {get_task(t).description}")
    models = st.multiselect("Models", [EMBEDDED, *REGISTRY], default=[EMBEDDED], accept_new_options=True,
                            help="The embedded default, a paper model in your Hugging Face cache, or type any "
                                 "HF id (org/name), local model folder or .gguf file.")
    valid = [model for model in models if check(resolve_model, model)]
    strategies = st.multiselect("Strategies", STRATEGY_ORDER, default=["p", "w", "p -> w -> p"])
    custom = st.text_input("Custom chain", placeholder="e.g. w -> p -> w", help="Any chain of p and w joined by ->.")
    if custom.strip() and check(parse_strategy, custom) is not None:
        strategies = [*strategies, custom.strip()]
    seeds = check(parse_seeds, st.text_input("Seeds", "0-2", help="Comma-separated, or a range like 0-2. The "
                                             "paper reports means of 3 seeds; one seed cannot show seed-to-seed "
                                             "noise.")) or []
    budget = st.segmented_control("Budget", BUDGETS, default="smoke", required=True)
    sizes = get_task(task).sizes[budget]
    defaults = resolve_config(task, valid[0], "vanilla", 0, budget) if valid else None
    overrides: dict[str, Any] = {}
    with st.expander("Advanced settings", icon=":material/tune:"):
        if defaults is None:
            st.caption("Pick a valid model to edit the settings.")
        else:
            overrides = advanced_settings(defaults)
            for model in valid:  # e.g. a backend that cannot serve one of them
                check(lambda m: resolve_config(task, m, "vanilla", 0, budget, overrides), model)
    name = st.text_input("Experiment name", f"{task} · {', '.join(models)} · {budget}",
                         max_chars=EXPERIMENT_NAME_MAX)

runs = len(models) * len(strategies) * len(seeds)
with summary, st.container(border=True):
    st.subheader("Summary")
    st.metric("Runs to queue", runs)
    st.caption(f"**{budget}** sizes for {task}: train {sizes.train} · val {sizes.val} · test {sizes.test}"
               + (f" (p samples {sizes.p_train} train / {sizes.p_val} val)" if sizes.p_train else ""))
    if seeds:
        st.caption(f"With {sizes.test} test examples × {len(seeds)} seeds, two strategies that differ by less than "
                   f"about **{100 * min_detectable_difference(sizes.test, len(seeds)):.1f} points** of accuracy are "
                   "hard to tell apart (80% power at 95% confidence, paired; see the README's Compare section).")
    if defaults is not None and runs:
        per_call = queries.seconds_per_call(db, models[0]) or CPU_SECONDS_PER_CALL
        candidates = overrides.get("num_candidates", defaults.num_candidates)
        calls = sum(lm_calls_at_most(sizes, s, candidates, get_task(task).modules) for s in strategies) * len(seeds)
        st.metric("Rough time, one after another", duration(calls * len(models) * per_call),
                  help=f"≈ {calls * len(models):,} LM calls at {per_call:.2f} s each (measured on this machine's "
                       "past runs when there are any); LoRA training and cache hits are not counted.")
    for error in errors:
        st.error(error)
    if st.button("Queue experiment", type="primary", icon=":material/rocket_launch:",
                 disabled=bool(errors) or not runs, width="stretch"):
        try:
            experiment = launch_experiment(db, name, [task], models, strategies, seeds, budget, overrides)
        except ValueError as exc:
            st.error(str(exc))
        else:
            st.success(f"Queued experiment #{experiment} with {runs} runs.")
            st.page_link(PAGES["runs"][0], label="Watch them on the Runs page", icon=":material/monitoring:")
