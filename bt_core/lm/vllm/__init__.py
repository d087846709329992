"""The vLLM backend, in four parts: the LM (backend.py), the folder of an adapter merged into the
weights that serves it on CPU (merged.py; the base's folder comes from bt_core/lm/converted.py),
the per-request field stop that runs in vLLM's engine process (stop.py), and the watch that
ends that process with its owner (guard.py). Absolute imports throughout: `import vllm` in
these modules is the vLLM package, never this one.
"""
