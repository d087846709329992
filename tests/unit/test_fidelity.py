"""Method fidelity: each test here failed on a defect of the method that biased scores.

A scripted LM makes each defect visible: a model that copies an answer it can see in its
prompt passes only by leaking, a metric that records its trace argument shows what it saw.
"""

from bt_core.lm.scripted import ScriptedLM
from bt_core.optimizers import BootstrapFewShot
from bt_core.optimizers.bootstrap import bootstrap_traces
from bt_core.tasks import get_task
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
