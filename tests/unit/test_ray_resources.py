"""What a run reserves on a Ray cluster: CPUs for the embedded model, a GPU for any other."""

from bt_core.ray_executor import RayOptions, resources


def test_the_embedded_model_takes_cpus_and_any_other_model_a_gpu():
    options = RayOptions(cpus_per_run=2, gpus_per_run=1)
    assert resources("smollm2-135m", options) == {"num_cpus": 2, "num_gpus": 0}
    assert resources("mistral-7b", options) == {"num_cpus": 2, "num_gpus": 1}
    assert resources("llama-3-8b", RayOptions(gpus_per_run=0)) == {"num_cpus": 1, "num_gpus": 0}
