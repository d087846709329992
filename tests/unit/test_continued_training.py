"""A second w continues the first: it trains from the previous adapter, and every adapter stays a
plain PEFT adapter of the base model (so PEFT and vLLM load each one alone)."""

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from bt_core.lm.base import LoraConfig
from bt_core.lm.lora import train_lora
from bt_core.optimizers import BootstrapFewShot, BootstrapFinetune
from bt_core.tasks import get_task
from tests.scripted import scripted_iris_lm

CONVERSATIONS = [[{"role": "system", "content": "Name the species."},
                  {"role": "user", "content": f"Petal Length: {x}"},
                  {"role": "assistant", "content": f"Species: {'setosa' if x < 2.5 else 'virginica'}"}]
                 for x in (1.4, 1.5, 5.1, 6.0)]


@pytest.fixture(scope="module")
def base(tiny_model):
    return AutoModelForCausalLM.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(tiny_model)


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


def test_a_second_training_starts_from_the_first_adapter(base, tmp_path):
    model, tokenizer = base
    config = LoraConfig(rank=4, alpha=8, epochs=2, batch_size=2, learning_rate=1e-2)
    first = train_lora(model, tokenizer, CONVERSATIONS, config, tmp_path / "first")
    frozen = LoraConfig(rank=4, alpha=8, epochs=1, batch_size=2, learning_rate=0.0)
    train_lora(model, tokenizer, CONVERSATIONS, frozen, tmp_path / "same", start_adapter=first.adapter_path)
    a, b = weights(tmp_path / "first"), weights(tmp_path / "same")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # lr 0: exactly where it began
    second = train_lora(model, tokenizer, CONVERSATIONS, config, tmp_path / "second", start_adapter=first.adapter_path)
    c = weights(tmp_path / "second")
    assert c.keys() == a.keys() and any(not torch.equal(a[k], c[k]) for k in a)
    loaded = PeftModel.from_pretrained(model, second.adapter_path)  # a plain adapter of the base model
    assert loaded.peft_config["default"].r == 4


IRIS = get_task("iris")
SPLITS = IRIS.load(15, 15, 30, seed=0)


def test_w_after_w_continues_and_names_its_adapter_by_its_start(tmp_path):
    student = IRIS.program()
    student.set_lm(scripted_iris_lm())
    prompted = BootstrapFewShot(IRIS.metric).compile(student, trainset=SPLITS.train)
    finetune = BootstrapFinetune(IRIS.metric, tmp_path)
    once = finetune.compile(prompted, trainset=SPLITS.train)
    twice = finetune.compile(once, trainset=SPLITS.train)
    first, second = once.bound_lm(), twice.bound_lm()
    assert second.adapter_path != first.adapter_path
    assert second._trained_on[: len(first._trained_on)] == first._trained_on  # it learnt the first w's data too
    assert len(second._trained_on) > len(first._trained_on)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.split("/")[-1] for p in (first.adapter_path, second.adapter_path))
