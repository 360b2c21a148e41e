"""The evaluation planner, without a command line: names, defaults, and mistakes before compute."""

import pytest

from l2o.errors import L2OError
from l2o.evaluate import Fixed, Tuned
from l2o.evaluation_plan import EvaluationRequest, plan_evaluation


def test_a_request_resolves_to_task_optimizers_horizon_and_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = plan_evaluation(EvaluationRequest(optimizers=["adam", "SGD"], learning_rate=0.1))
    assert list(plan.optimizers) == ["Adam", "SGD"]
    assert all(isinstance(o, Fixed) and o.learning_rate == 0.1 for o in plan.optimizers.values())
    assert plan.task.name == "quadratic" and plan.num_steps == 100
    assert str(plan.out) == "runs/evaluate-quadratic"
    tuned = plan_evaluation(EvaluationRequest(optimizers=["all"], problem="scaled-quadratic", kind="baseline"))
    assert len(tuned.optimizers) == 5 and all(isinstance(o, Tuned) for o in tuned.optimizers.values())
    assert tuned.num_steps == 20 and str(tuned.out) == "runs/baseline-scaled-quadratic"  # the preset's horizon


@pytest.mark.parametrize("request_, fragment", [
    (EvaluationRequest(optimizers=["L2L"]), "needs --path"),
    (EvaluationRequest(optimizers=["AdaGrad"]), "unknown optimizer AdaGrad"),
    (EvaluationRequest(optimizers=["Adam"], learning_rate=0.1, tune=True), "exclude each other"),
    (EvaluationRequest(optimizers=["Adam"], num_steps=0), "--num_steps must be a positive integer"),
    (EvaluationRequest(optimizers=["Adam"], num_instances=0), "--num_epochs must be a positive integer"),
    (EvaluationRequest(optimizers=["Adam"], problem="simple", data_dir="."), "--data_dir does not apply"),
])
def test_mistakes_are_one_line(request_, fragment):
    with pytest.raises(L2OError, match=fragment.replace("(", r"\(")):
        plan_evaluation(request_)
