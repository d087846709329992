"""The vLLM backend, in three parts: the LM (backend.py; the model folder it loads comes from
bt_core/lm/converted.py), the per-request field stop that runs in vLLM's engine process
(stop.py), and the watch that ends that process with its owner (guard.py). Absolute imports
throughout: `import vllm` in these modules is the vLLM package, never this one.
"""
