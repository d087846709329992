"""Linear layers computed from weights packed for oneDNN, on CPU, while generating.

A CPU matrix product first lays its weight out in blocks that suit the vector unit; a plain
`F.linear` does that on every call, which costs most at the few rows of a decoding step and at
the vocabulary-wide output layer. PyTorch's oneDNN ops (the ones its compiler uses for frozen
CPU models) take a weight packed once instead; benchmarks/decode_speed.py measures the gain.

A packed copy costs the memory of its weight, so only the model generating now keeps its packs
(a merged adapter model reuses the packs of the base weights it shares), and training, which
needs the plain layers' gradients, releases them first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import torch

from bt_core.lm.memory import return_freed_memory

Pack = tuple[torch.Tensor, torch.Tensor]  # (the weight, its packed copy): the weight's storage stays alive,
_packs: dict[tuple[int, int, torch.dtype], Pack] = {}  # so no other weight can take its address as key


def supported(weight: torch.Tensor) -> bool:
    """oneDNN packs CPU weights in fp32 and bf16."""
    return (weight.device.type == "cpu" and weight.dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available())


@contextmanager
def packed(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block the model's Linear layers compute from packed weights; each weight is packed
    on first use and kept while this model is the one generating."""
    if not supported(next(model.parameters())):
        yield
        return
    linears = [module for module in model.modules() if type(module) is torch.nn.Linear]
    kept = {_key(module.weight): _pack(module.weight) for module in linears}
    dropped = _packs.keys() - kept.keys()
    _packs.clear()
    _packs.update(kept)
    if dropped:  # another model's packs: their memory goes back before this model's batch needs its own
        return_freed_memory()
    for module in linears:
        module.forward = partial(_forward, _packs[_key(module.weight)][1], module.bias)
    try:
        yield
    finally:
        for module in linears:
            del module.forward  # the class's own forward again, for training and copying


def release() -> None:
    """Drop every packed weight (before training, which then has the memory they held)."""
    _packs.clear()
    return_freed_memory()


def _key(weight: torch.Tensor) -> tuple[int, int, torch.dtype]:
    return weight.data_ptr(), weight._version, weight.dtype


def _pack(weight: torch.Tensor) -> Pack:
    return _packs.get(_key(weight)) or (weight, _reordered(weight))


def _reordered(weight: torch.Tensor) -> torch.Tensor:
    """The weight in oneDNN's blocked layout, for any batch size."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)


def product(weight: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> x @ weight.T from `weight` packed once, as a packed layer computes it (for a ceiling that
    measures the machine's fastest product)."""
    return partial(_forward, _reordered(weight), None)


def _forward(packed_weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1])
    out = torch.ops.mkldnn._linear_pointwise(rows, packed_weight, bias, "none", [], "")
    return out.reshape(*x.shape[:-1], out.shape[-1])
