"""What a run reserves on a Ray cluster: CPUs for the embedded model, a GPU for any other."""

from bt_core.serve.ray_executor import RayOptions, resources


def test_the_embedded_model_takes_cpus_and_any_other_model_a_gpu():
    options = RayOptions(cpus_per_run=2, gpus_per_run=1)
    assert resources("smollm2-135m", options) == {"num_cpus": 2, "num_gpus": 0}
    assert resources("mistral-7b", options) == {"num_cpus": 2, "num_gpus": 1}
    assert resources("llama-3-8b", RayOptions(gpus_per_run=0)) == {"num_cpus": 1, "num_gpus": 0}


def test_no_database_password_travels_through_ray(monkeypatch):
    from bt_core.serve.ray_executor import _forwarded_env, _without_password, node_database_url

    url = "postgresql+psycopg://bt:s3cret@db.example:5432/bt"
    monkeypatch.setenv("BT_DATABASE_URL", url)
    monkeypatch.setenv("BT_DATA_DIR", "/shared/data")
    assert "s3cret" not in str(_forwarded_env()) and _forwarded_env()["BT_DATA_DIR"] == "/shared/data"
    task_url = _without_password(url)
    assert task_url == "postgresql+psycopg://bt@db.example:5432/bt"
    assert node_database_url(task_url) == url  # a node whose own environment has the password uses it
    monkeypatch.setenv("BT_DATABASE_URL", "postgresql://bt:other@elsewhere/bt")
    assert node_database_url(task_url) == task_url  # another database's URL is not taken for this one
