"""Dashboard helpers shared by the pages (kept out of pages/ so Streamlit never lists them as pages).

`common` holds Streamlit widgets and renderers, `tables` and `charts` are pure pandas and
plotly shaping, `run_detail` is the Runs page's detail panel.
"""
