"""Dashboard helpers for the pages in app_pages/, each named after the page it serves
(`compare_strategies`, `launch_experiment`, `runs_monitor`, `trace_explorer`); `common` holds the
database handle, pickers and text renderers shared by all, and `tables` and `charts` are pure
pandas and plotly shaping.
"""
