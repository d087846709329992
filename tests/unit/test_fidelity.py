"""Method fidelity: each test here failed on a defect of the method that biased scores.

A scripted LM makes each defect visible: a model that copies an answer it can see in its
prompt passes only by leaking, a metric that records its trace argument shows what it saw.
"""

from bt_core.evaluate import evaluate
from bt_core.lm.scripted import ScriptedLM
from bt_core.modules import Call, Example
from bt_core.optimizers import BetterTogether, BootstrapFewShot, BootstrapFewShotWithRandomSearch, LabeledFewShot
from bt_core.optimizers.bootstrap import bootstrap_traces, teacher_for
from bt_core.tasks import get_task
from bt_core.tasks.hotpotqa import MultiHop
from tests.scripted import scripted_iris_lm

IRIS = get_task("iris")
SPLITS = IRIS.load(15, 15, 30, seed=0)


def copycat(messages, trained_on) -> str:
    """Repeats the answer of a demo whose input is exactly this call's input, else answers wrongly."""
    asked = messages[-1]["content"]
    for user, answer in zip(messages[1:-1:2], messages[2:-1:2]):
        if user["content"] == asked:
            return answer["content"]
    return "Reasoning: no demo to copy\nSpecies: none"


def test_no_train_example_sees_its_own_bootstrapped_demo():
    student = IRIS.program()
    student.set_lm(scripted_iris_lm())
    prompted = BootstrapFewShot(IRIS.metric, max_bootstrapped_demos=3, max_labeled_demos=3).compile(
        student, trainset=SPLITS.train)
    assert all("reasoning" in d for d in prompted.classify.demos)  # all three came from traces
    prompted.set_lm(ScriptedLM(copycat))
    results = bootstrap_traces(prompted, SPLITS.train, IRIS.metric, threads=4)  # a w step's teacher
    assert [r.index for r in results if r.score] == []
    again = BootstrapFewShot(IRIS.metric).compile(prompted, trainset=SPLITS.train)  # a second p step
    assert not any("reasoning" in d for d in again.classify.demos)


class NoPassages:
    def search(self, query: str, k: int) -> list:
        return []


def hotpotqa_program(script) -> MultiHop:
    program = MultiHop(NoPassages())
    program.set_lm(ScriptedLM(script))
    return program


QA = [Example(question=f"question {i}?", answer=f"answer {i}").with_inputs("question") for i in range(6)]


def test_labeled_examples_without_a_modules_outputs_are_no_demos_for_it():
    """HotPotQA's examples have no search_query: as demos of a query module they are empty turns."""
    labeled = LabeledFewShot(k=3).compile(hotpotqa_program(copycat), trainset=QA)
    assert [len(q.demos) for q in labeled.generate_query] == [0, 0] and len(labeled.generate_answer.demos) == 3
    teacher = teacher_for(hotpotqa_program(copycat), None, QA, 3, seed=0)
    assert [len(q.demos) for q in teacher.generate_query] == [0, 0]
    filled = BootstrapFewShot(lambda e, p, t=None: 0.0).compile(hotpotqa_program(copycat), trainset=QA)
    assert [len(q.demos) for q in filled.generate_query] == [0, 0] and len(filled.generate_answer.demos) == 3


def test_the_metric_sees_the_trace_while_bootstrapping_and_only_then():
    seen = []

    def metric(example, prediction, trace=None):
        seen.append(trace)
        return IRIS.metric(example, prediction, trace)

    student = IRIS.program()
    student.set_lm(scripted_iris_lm())
    prompted = BootstrapFewShot(metric).compile(student, trainset=SPLITS.train)
    assert seen and all(t and all(isinstance(c, Call) for c in t) for t in seen)
    seen.clear()
    evaluate(prompted, SPLITS.val, metric, split="val")
    assert seen and all(t is None for t in seen)


def test_zero_bootstrapped_demos_means_none_in_every_candidate():
    student = IRIS.program()
    student.set_lm(scripted_iris_lm())
    search = BootstrapFewShotWithRandomSearch(IRIS.metric, num_candidates=3, max_bootstrapped_demos=0)
    search.compile(student, trainset=SPLITS.train, valset=SPLITS.val)
    assert [c.label for c in search.candidates][3:] == [f"random #{i} (0 demos)" for i in (1, 2, 3)]
    assert not any("reasoning" in d for c in search.candidates for d in c.program.classify.demos)


class Forget:
    """An optimizer step that drops every demo: a chain that ends worse than it was."""

    def compile(self, student, *, trainset, valset=None):
        return student.reset_copy()


def test_a_strategy_produces_its_final_program_and_names_the_best_step_on_validation():
    student = IRIS.program()
    student.set_lm(scripted_iris_lm())
    optimizer = BetterTogether(IRIS.metric, {"p": LabeledFewShot(k=3), "f": Forget()}, strategy="p -> f")
    final = optimizer.compile(student, trainset=SPLITS.train, valset=SPLITS.val)
    assert [(c.strategy, c.score > 0) for c in optimizer.candidate_programs] == [
        ("vanilla", False), ("p", True), ("p -> f", False)]
    assert final.classify.demos == [] and final is optimizer.candidate_programs[-1].program
    assert optimizer.best_on_validation.strategy == "p"
    assert [s.label for s in optimizer.steps(SPLITS.train, SPLITS.val)] == ["vanilla", "p", "p -> f"]
