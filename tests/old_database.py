"""A SQLite database as a version before issue 15 left it: schema revision 0001 (no runs.attempt),
rows written with plain SQL in the shapes that version wrote.

Run 1 finished "p -> w": steps, candidate programs, per-example scores, LM-call traces and a
LoRA job. Run 2 was re-queued after its worker died with step 0 done; its stored config has a
setting since removed ("temperature") and lacks one added since ("eval_test_each_step"); both
hold the backend their launch resolved to ("hf"), as every config did before issue 18.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import create_engine, text

from bt_core.serve.config import resolve_config
from bt_core.serve.export import artifacts_dir
from db.migrate import upgrade

FINISHED, UNFINISHED = 1, 2
INSTRUCTIONS = "Given the measurements of an iris flower, decide its species: setosa, versicolor or virginica."
SIGNATURE = {"inputs": [{"name": name, "desc": "in cm"} for name in
                        ("sepal_length", "sepal_width", "petal_length", "petal_width")],
             "outputs": [{"name": "reasoning", "desc": "think step by step, briefly"},
                         {"name": "species", "desc": "one of: setosa, versicolor, virginica"}],
             "instructions": INSTRUCTIONS}
EXAMPLES = [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "species": "setosa"},
            {"sepal_length": 6.3, "sepal_width": 2.7, "petal_length": 4.9, "petal_width": 1.8,
             "species": "virginica"}]


def state(demos: list[dict]) -> str:
    return json.dumps({"classify": {"signature": SIGNATURE, "demos": demos}})


def config(strategy: str) -> dict:
    stored = resolve_config("iris", strategy=strategy, budget="smoke").model_dump()
    del stored["eval_test_each_step"]
    return {**stored, "temperature": 0.0, "backend": "hf"}


def old_database(path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    upgrade(engine, "0001")
    with engine.begin() as db:
        def sql(statement: str, **values: object) -> None:
            db.execute(text(statement), values)
        sql("INSERT INTO experiments (id, name, created_at, grid) VALUES (1, 'before issue 15', "
            "'2024-05-01 10:00:00', :grid)", grid=json.dumps({"tasks": ["iris"], "strategies": ["p -> w", "p"]}))
        for run_id, strategy, status, score in ((FINISHED, "p -> w", "done", 0.5), (UNFINISHED, "p", "queued", None)):
            sql("INSERT INTO runs (id, experiment_id, task, model, strategy, seed, budget, config, config_hash, "
                "status, progress, cancel_requested, created_at, started_at, finished_at, val_score, test_score) "
                "VALUES (:id, 1, 'iris', 'smollm2-135m', :strategy, 0, 'smoke', :config, 'old', :status, :progress, "
                "0, '2024-05-01 10:00:00', '2024-05-01 10:00:01', :finished, :score, :score)",
                id=run_id, strategy=strategy, config=json.dumps(config(strategy)), status=status,
                progress=1.0 if score else 0.5, finished="2024-05-01 10:05:00" if score else None, score=score)
        steps = [(1, FINISHED, 0, "vanilla", "", []), (2, FINISHED, 1, "p", "p", [EXAMPLES[0]]),
                 (3, FINISHED, 2, "w", "p -> w", [EXAMPLES[0]]), (4, UNFINISHED, 0, "vanilla", "", [])]
        for step_id, run_id, index, kind, label, demos in steps:
            adapter = str(artifacts_dir(run_id) / "step-2") if kind == "w" else None  # never written
            sql("INSERT INTO steps (id, run_id, \"index\", kind, label, status, program_state, adapter_path, "
                "val_score, test_score, started_at, finished_at) VALUES (:id, :run, :index, :kind, :label, 'done', "
                ":state, :adapter, 0.5, 0.5, '2024-05-01 10:01:00', '2024-05-01 10:02:00')",
                id=step_id, run=run_id, index=index, kind=kind, label=label, state=state(demos), adapter=adapter)
            sql("INSERT INTO programs (id, run_id, step_id, label, role, state, adapter_path, val_score, chosen) "
                "VALUES (:id, :run, :id, :label, 'candidate', :state, :adapter, 0.5, 1)",
                id=step_id, run=run_id, label="zero-shot" if not demos else "random #1", state=state(demos),
                adapter=adapter)
            for index_, example in enumerate(EXAMPLES):
                for split in ("val", "test"):
                    sql("INSERT INTO example_scores (run_id, step_id, program_id, split, example_index, score, "
                        "example, prediction, error, details) VALUES (:run, :step, :step, :split, :i, :score, "
                        ":example, :prediction, NULL, '{}')", run=run_id, step=step_id, split=split, i=index_,
                        score=1.0 if index_ == 0 else 0.0, example=json.dumps(example),
                        prediction=json.dumps({"reasoning": "petal length", "species": "setosa"}))
                    sql("INSERT INTO traces (run_id, step_id, program_id, split, example_index, position, module, "
                        "messages, completion, parsed, parse_error, prompt_tokens, completion_tokens, latency_ms, "
                        "cache_hit) VALUES (:run, :step, :step, :split, :i, 0, 'classify', :messages, :completion, "
                        ":parsed, NULL, 40, 9, 12.5, 0)", run=run_id, step=step_id, split=split, i=index_,
                        messages=json.dumps([{"role": "system", "content": INSTRUCTIONS},
                                             {"role": "user", "content": f"Petal Length: {example['petal_length']}"}]),
                        completion="Reasoning: petal length\nSpecies: setosa",
                        parsed=json.dumps({"reasoning": "petal length", "species": "setosa"}))
        sql("INSERT INTO trainings (run_id, step_id, examples, hyperparams, losses, seconds, adapter_path) VALUES "
            "(:run, 3, 4, :hyperparams, '[[1, 0.9], [2, 0.5]]', 3.5, '/gone/adapter')", run=FINISHED,
            hyperparams=json.dumps(config("p -> w")["lora"]))
    engine.dispose()
    return url
