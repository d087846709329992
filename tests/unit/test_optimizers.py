"""Every optimizer against the scripted Iris model: what each step must do to a program."""

from pathlib import Path

import pytest

from bt_core.evaluate import evaluate
from bt_core.lm.base import LoraConfig
from bt_core.lm.scripted import ScriptedLM
from bt_core.modules import SOURCE, example_id
from bt_core.optimizers import (
    BetterTogether,
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    BootstrapFinetune,
    LabeledFewShot,
)
from bt_core.optimizers.better_together import lm_calls_at_most
from bt_core.recording import Recorder, recording
from bt_core.strategy import parse_strategy
from bt_core.tasks import get_task
from tests.scripted import counting, iris_script, lost_with_demos, scripted_iris_lm

IRIS = get_task("iris")
SPLITS = IRIS.load(15, 15, 30, seed=0)
LARGE = IRIS.load(48, 48, 0, seed=0)  # three chunks of 16: room to stop early


@pytest.fixture
def student():
    program = IRIS.program()
    program.set_lm(scripted_iris_lm())
    return program


def score(program, split=SPLITS.val):
    return evaluate(program, split, IRIS.metric, split="val").score


def test_zero_shot_parse_failures_score_zero_and_keep_the_completion(student):
    result = evaluate(student, SPLITS.val, IRIS.metric, split="val")
    assert result.score == 0.0
    assert all(r.error.startswith("parse error") and r.calls[0].completion.text for r in result.results)


def test_labeled_few_shot_samples_training_examples(student):
    program = LabeledFewShot(k=3, seed=1).compile(student, trainset=SPLITS.train)
    demos = program.classify.demos
    assert len(demos) == 3
    assert all({k: v for k, v in d.items() if k != SOURCE} in SPLITS.train for d in demos)
    assert [d[SOURCE] for d in demos] == [example_id(next(e for e in SPLITS.train if e.items() <= d.items()))
                                          for d in demos]
    assert student.classify.demos == []  # compile never mutates its input


def test_bootstrap_keeps_only_successful_traces_with_reasoning(student):
    program = BootstrapFewShot(IRIS.metric, max_bootstrapped_demos=3, max_labeled_demos=4).compile(
        student, trainset=SPLITS.train)
    demos = program.classify.demos
    bootstrapped = [d for d in demos if "reasoning" in d]
    assert len(bootstrapped) == 3 and len(demos) == 4
    for demo in bootstrapped:
        gold = next(e for e in SPLITS.train if all(e[k] == demo[k] for k in e.inputs()))
        assert demo["species"] == gold["species"] and demo["reasoning"].startswith("petal length")


def test_random_search_scores_every_candidate_and_keeps_the_best(student):
    optimizer = BootstrapFewShotWithRandomSearch(IRIS.metric, num_candidates=3, seed=0)
    best = optimizer.compile(student, trainset=SPLITS.train, valset=SPLITS.val)
    labels = [c.label for c in optimizer.candidates]
    assert labels[:3] == ["zero-shot", "labeled demos", "bootstrapped"] and len(labels) == 6
    assert optimizer.candidates[0].score == 0.0
    assert score(best) == max(c.score for c in optimizer.candidates) > 0.5


class Scores(Recorder):
    """Counts the examples and LM calls recorded per split."""

    def __init__(self) -> None:
        self.examples: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def evaluation(self, program_id, split, results):
        self.examples[split] = self.examples.get(split, 0) + len(results)
        self.calls[split] = self.calls.get(split, 0) + sum(len(r.calls) for r in results)


def program_on(script):
    program = IRIS.program()
    program.set_lm(ScriptedLM(script))
    return program


@pytest.mark.parametrize("must_beat, scored", [(None, 48), (1.0, 0), (32 / 48, 16), (32 / 48 - 1e-9, 32), (0.0, 48)])
def test_evaluate_stops_once_the_program_cannot_beat_a_score(must_beat, scored):
    """A program that fails every example can reach 32/48 at most after 16 of 48 and 16/48 after 32;
    a tie does not beat, and the last chunk ends a complete evaluation, whatever it scored."""
    failing = LabeledFewShot(k=3).compile(program_on(lost_with_demos), trainset=SPLITS.train)
    result = evaluate(failing, LARGE.val, IRIS.metric, split="val", must_beat=must_beat)
    assert len(result.results) == scored and result.total == 48
    assert result.complete == (scored == 48)
    if not result.complete:
        assert result.ceiling == (48 - scored) / 48
        with pytest.raises(ValueError, match=f"scored {scored} of 48"):
            result.score


def chosen_without_stopping(candidates, valset):
    """The candidate random search would choose if it scored every one on the whole valset."""
    scores = [evaluate(c.program, valset, IRIS.metric, split="val").score for c in candidates]
    return candidates[scores.index(max(scores))]


@pytest.mark.parametrize("script", [lost_with_demos, iris_script], ids=["first-is-best", "later-is-best"])
def test_random_search_stops_scoring_hopeless_candidates_and_chooses_the_same(script):
    calls = Scores()
    search = BootstrapFewShotWithRandomSearch(IRIS.metric, num_candidates=3, seed=0)
    with recording(calls):
        best = search.compile(program_on(script), trainset=SPLITS.train, valset=LARGE.val)
    chosen = chosen_without_stopping(search.candidates, LARGE.val)
    assert best is chosen.program and chosen.score is not None and chosen.scored == 48
    stopped = [c for c in search.candidates if c.score is None]
    assert calls.examples["val"] == sum(c.scored for c in search.candidates)
    assert all(c.scored < 48 and c.ceiling <= chosen.score for c in stopped)
    if script is lost_with_demos:  # every candidate after zero-shot fails its first 16 examples
        first, *later = search.candidates
        assert first.scored == 48 and first.score > 32 / 48
        assert [(c.scored, c.ceiling) for c in later] == [(16, 32 / 48)] * 5
        full = sum(len(r.calls) for c in search.candidates
                   for r in evaluate(c.program, LARGE.val, IRIS.metric, split="val").results)
        assert calls.calls["val"] < full / 2


def test_bootstrap_stops_the_teacher_once_every_predictor_has_its_demos():
    def demos_and_calls(threads):
        script, calls = counting(iris_script)
        program = BootstrapFewShot(IRIS.metric, max_bootstrapped_demos=3, max_labeled_demos=4,
                                   threads=threads).compile(program_on(script), trainset=LARGE.train)
        return program.classify.demos, len(calls)
    early, calls = demos_and_calls(16)
    whole, all_calls = demos_and_calls(48)  # one chunk: the teacher runs on every example
    assert early == whole and sum("reasoning" in d for d in early) == 3 and len(early) == 4
    assert calls == 16 and all_calls == 48


def test_bootstrap_without_bootstrapped_demos_runs_no_teacher():
    script, calls = counting(iris_script)
    program = BootstrapFewShot(IRIS.metric, max_bootstrapped_demos=0, max_labeled_demos=3).compile(
        program_on(script), trainset=SPLITS.train)
    assert calls == [] and len(program.classify.demos) == 3
    assert program.classify.demos == LabeledFewShot(3, seed=0).compile(
        program_on(script), trainset=SPLITS.train).classify.demos


def test_finetune_trains_on_passing_traces_and_rebinds_the_lm(student, tmp_path):
    prompted = BootstrapFewShot(IRIS.metric).compile(student, trainset=SPLITS.train)
    before = score(prompted)
    tuned = BootstrapFinetune(IRIS.metric, tmp_path, lora=LoraConfig(epochs=2)).compile(prompted, trainset=SPLITS.train)
    lm = tuned.bound_lm()
    assert lm.adapter_path and lm.adapter_path.startswith(str(tmp_path))
    trained_on = lm._trained_on
    assert trained_on and all(c[-1]["role"] == "assistant" and "Species:" in c[-1]["content"] for c in trained_on)
    # only passing traces: every answer matches its example's label
    assert all("versicolor" not in c[-1]["content"] for c in trained_on)
    assert score(tuned) > before
    assert prompted.bound_lm().adapter_path is None


def test_finetune_without_any_passing_trace_keeps_the_weights_and_says_why(tmp_path):
    program = IRIS.program()
    lm = ScriptedLM(lambda m, t: "no idea")
    program.set_lm(lm)
    skipped = []

    class Skips(Recorder):
        def training_skipped(self, reason, config):
            skipped.append(reason)

    with recording(Skips()):
        tuned = BootstrapFinetune(IRIS.metric, tmp_path).compile(program, trainset=SPLITS.train)
    assert tuned.bound_lm() is lm and not list(tmp_path.iterdir())
    assert len(skipped) == 1 and "none of the 15 training traces passed" in skipped[0]


def test_better_together_chains_steps_and_keeps_every_prefix(student, tmp_path):
    optimizer = BetterTogether(IRIS.metric, {
        "p": BootstrapFewShotWithRandomSearch(IRIS.metric, num_candidates=1),
        "w": BootstrapFinetune(IRIS.metric, tmp_path)}, strategy="p -> w -> p")
    best = optimizer.compile(student, trainset=SPLITS.train, valset=SPLITS.val)
    prefixes = [c.strategy for c in optimizer.candidate_programs]
    assert prefixes == ["vanilla", "p", "p -> w", "p -> w -> p"]
    scores = [c.score for c in optimizer.candidate_programs]
    assert scores[0] == 0.0 and scores[2] > scores[1]  # w after p learns versicolor
    assert best.bound_lm().adapter_path is not None
    assert scores[3] == 1.0  # the tuned model needs no demos: zero-shot wins the last p (first of equals)


@pytest.mark.parametrize("text, steps", [("vanilla", []), ("p", ["p"]), ("w->p", ["w", "p"]),
                                         (" p -> w -> p ", ["p", "w", "p"]),
                                         ("p -> p -> w -> w", ["p", "p", "w", "w"])])
def test_strategy_strings(text, steps):
    assert parse_strategy(text) == steps


@pytest.mark.parametrize("text, message", [("", "empty strategy"), ("p -> x", "unknown strategy step 'x'"),
                                           ("p ->", "unknown strategy step ''")])
def test_bad_strategies_name_the_valid_steps(text, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_strategy(text)
    assert "p, w" in str(info.value)


def test_a_validation_set_is_carved_from_the_trainset_when_none_is_given(student):
    optimizer = BetterTogether(IRIS.metric, {"p": LabeledFewShot(k=2)}, strategy="p", valset_ratio=0.2)
    train, val = optimizer._split(SPLITS.train, None)
    assert len(val) == 3 and len(train) == 12 and not set(map(str, val)) & set(map(str, train))
    optimizer.compile(student, trainset=SPLITS.train)
    assert [c.strategy for c in optimizer.candidate_programs] == ["vanilla", "p"]


def test_optimizers_are_pluggable_by_name(student):
    optimizer = BetterTogether(IRIS.metric, {"p": LabeledFewShot(k=2), "q": LabeledFewShot(k=1)}, strategy="q -> p")
    optimizer.compile(student, trainset=SPLITS.train, valset=SPLITS.val)
    steps = optimizer.candidate_programs
    assert [c.strategy for c in steps] == ["vanilla", "q", "q -> p"]
    assert [len(c.program.classify.demos) for c in steps] == [0, 1, 2]
    with pytest.raises(ValueError, match="valid: p, q"):
        BetterTogether(IRIS.metric, {"p": LabeledFewShot(), "q": LabeledFewShot()}, strategy="w")


@pytest.mark.parametrize("build", [lambda: BootstrapFewShotWithRandomSearch(IRIS.metric, 6, 3, 3, 0),
                                   lambda: BootstrapFewShot(IRIS.metric, 3, 3),
                                   lambda: BootstrapFinetune(IRIS.metric, Path("adapters"), LoraConfig(), 3)])
def test_optimizer_settings_are_taken_by_name_only(build):
    """Positional numbers could be swapped silently (candidates for demos, train for val sizes)."""
    with pytest.raises(TypeError, match="positional argument"):
        build()


def test_the_call_estimate_grows_with_the_chain_and_the_modules():
    sizes = get_task("iris").sizes["smoke"]
    vanilla, p, pwp = (lm_calls_at_most(sizes, s, 1, 1) for s in ("vanilla", "p", "p -> w -> p"))
    assert vanilla == sizes.val + sizes.test
    assert vanilla < p < pwp
    assert lm_calls_at_most(sizes, "p", 1, 3) == 3 * p


@pytest.mark.parametrize("name", ["iris", "gsm8k", "hotpotqa"])
def test_a_task_declares_the_modules_its_program_has(name):
    task = get_task(name)
    assert task.modules == len(task.program().predictors())
