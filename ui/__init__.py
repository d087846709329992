"""Dashboard helpers shared by the pages in app_pages/: pickers, tables, charts, plain-text renderers.

`common` holds the database handle, pickers and text renderers; `tables` and `charts` are pure
pandas and plotly shaping; `run_detail`, `traces` and `settings` are the bigger pieces of the
Runs, Traces and Launch pages.
"""
