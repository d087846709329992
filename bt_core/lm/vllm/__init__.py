"""The vLLM backend, in four parts: the LM (backend.py), the model folder vLLM loads (model.py),
the per-request field stop that runs in vLLM's engine process (stop.py), and the watch that ends
that process with its owner (guard.py). Absolute imports throughout: `import vllm` in these
modules is the vLLM package, never this one.
"""
