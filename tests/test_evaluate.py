"""Fair evaluation: tuning picks the best grid point on its own instances; curves are exact."""

import importlib

import jax
import numpy as np
import optax
import pytest

from l2o.evaluate import Tuned, evaluate, run_trajectories, tune_learning_rate
from l2o.meta import trajectory
from l2o.optimizers import get_baseline
from l2o.report import bootstrap_interval, format_table, write_report
from l2o.tasks import draw_problems, mlp_classifier, quadratic, scaled_quadratic


def test_curves_equal_a_plain_optax_loop():
    task = quadratic(num_dims=3, batch_size=2)
    problems = draw_problems(task, jax.random.PRNGKey(0), 2)
    tx = optax.sgd(0.1, momentum=0.9)
    curves, _ = run_trajectories(task, tx, problems, 7)
    assert curves.shape == (2, 8)
    for i in range(2):
        inst = jax.tree.map(lambda a, i=i: a[i], problems[0])
        params = jax.tree.map(lambda a, i=i: a[i], problems[1])
        state = tx.init(params)
        expected = []
        for _ in range(7):
            loss, grads = jax.value_and_grad(task.loss)(params, inst, None)
            expected.append(float(loss))
            updates, state = tx.update(grads, state, params)
            params = optax.apply_updates(params, updates)
        expected.append(float(task.loss(params, inst, None)))
        np.testing.assert_allclose(curves[i], expected, rtol=1e-5)


def test_a_progress_bar_splits_runs_into_segments_without_changing_a_number():
    """With a progress label the runs advance in segments (here 3 uneven ones, and batches of 2
    of 3 runs); minibatches, losses and held-out metrics are those of each run's trajectory."""
    task = mlp_classifier(layers=(7,), activation="relu", dataset="digits", batch_size=16, test_examples=50)
    problems = draw_problems(task, jax.random.PRNGKey(2), 3)
    tx = optax.adam(3e-2)
    whole, whole_test = run_trajectories(task, tx, problems, 8)
    segmented, segmented_test = run_trajectories(task, tx, problems, 8, parallel_runs=2, progress="test", segments=3)
    assert segmented.shape == whole.shape == (3, 9)
    assert run_trajectories(task, tx, problems, 0, progress="test")[0].shape == (3, 1)  # the initial loss only
    for i in range(3):
        inst, params, key = jax.tree.map(lambda a, i=i: a[i], problems)
        np.testing.assert_allclose(whole[i], trajectory(task, tx, inst, params, key, 8)[0], rtol=1e-5)
    np.testing.assert_allclose(segmented, whole, rtol=1e-5)
    assert whole_test.keys() == segmented_test.keys() and whole_test
    for name in whole_test:
        np.testing.assert_allclose(segmented_test[name], whole_test[name], rtol=1e-5)


def test_runs_interrupted_halfway_continue_from_their_stored_position(tmp_path, monkeypatch):
    """Runs stored after every segment (3 runs in batches of 2, 3 segments each) and killed in
    the second batch continue where they stopped: only the remaining segments run, the curves
    and metrics are those of an uninterrupted call, and the stored position is removed."""
    module = importlib.import_module("l2o.evaluate")  # l2o.evaluate is also the function
    task = mlp_classifier(layers=(7,), activation="relu", dataset="digits", batch_size=16, test_examples=50)
    problems = draw_problems(task, jax.random.PRNGKey(3), 3)
    tx = optax.adam(3e-2)
    whole, whole_test = run_trajectories(task, tx, problems, 8)
    partial, real_store, stores = tmp_path / "runs.partial.npz", module._store_runs, []

    def killed_after_five(*args, **kwargs):
        real_store(*args, **kwargs)
        stores.append(args[5:])
        if len(stores) == 5:  # the first batch's 3 segments and its end, then one segment of the second
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(module, "_store_runs", killed_after_five)
        with pytest.raises(KeyboardInterrupt):
            run_trajectories(task, tx, problems, 8, parallel_runs=2, segments=3, partial=partial)
    assert partial.is_file()
    stores.clear()
    monkeypatch.setattr(module, "_store_runs", lambda *args, **kwargs: (real_store(*args, **kwargs),
                                                                               stores.append(args[5:])))
    resumed, resumed_test = run_trajectories(task, tx, problems, 8, parallel_runs=2, segments=3, partial=partial)
    assert len(stores) == 3  # two segments left and the batch's end
    np.testing.assert_allclose(resumed, whole, rtol=1e-5)
    for name in whole_test:
        np.testing.assert_allclose(resumed_test[name], whole_test[name], rtol=1e-5)
    assert not partial.exists()


def test_tuning_picks_the_grid_point_with_lowest_log_mean_final_loss():
    task = scaled_quadratic(num_dims=2)
    problems = draw_problems(task, jax.random.PRNGKey(1), 8)
    grid = (1e-3, 1e-2, 0.3, 5.0)
    best, scores = tune_learning_rate(task, Tuned(get_baseline("SGD"), grid), problems, 10)
    for lr in grid:
        finals = run_trajectories(task, optax.sgd(lr), problems, 10)[0][:, -1]
        expected = np.log10(np.mean(finals)) if np.all(np.isfinite(finals)) else np.inf
        assert scores[lr] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert best == 0.3  # too small barely moves; 5.0 diverges (|1 - 2 * 5 s^2| > 1)
    assert scores[5.0] > scores[0.3]


def test_evaluate_tunes_on_instances_disjoint_from_test_instances():
    task = scaled_quadratic(num_dims=2)
    evaluation = evaluate(
        task, {"SGD": Tuned(get_baseline("SGD"), (0.1, 0.3)), "fixed": optax.sgd(0.01)},
        num_steps=5, num_instances=6, num_tuning_instances=4, seed=3,
    )
    sgd, fixed = evaluation.results["SGD"], evaluation.results["fixed"]
    assert sgd.losses.shape == (6, 6) and fixed.learning_rate is None
    assert sgd.learning_rate in (0.1, 0.3)
    # Same test instances for every optimizer: identical starting losses.
    np.testing.assert_array_equal(sgd.losses[:, 0], fixed.losses[:, 0])
    # The tuning instances' starting losses differ from all test instances'.
    from l2o.evaluate import _TEST, _TUNING

    key = jax.random.PRNGKey(3)
    tuning = draw_problems(task, jax.random.fold_in(key, _TUNING), 4)
    test = draw_problems(task, jax.random.fold_in(key, _TEST), 6)
    assert not set(np.asarray(tuning[0]["scale"]).ravel()) & set(np.asarray(test[0]["scale"]).ravel())


def test_report_files_and_intervals(tmp_path):
    task = scaled_quadratic(num_dims=2)
    evaluation = evaluate(task, {"SGD": optax.sgd(0.1), "Adam": optax.adam(0.1)}, num_steps=5,
                          num_instances=10, num_tuning_instances=2)
    write_report(evaluation, tmp_path, command="l2o evaluate --problem scaled-quadratic")
    assert {p.name for p in tmp_path.iterdir()} == {"results.json", "report.md", "loss.png"}
    table = format_table(evaluation)
    assert "SGD" in table and "Adam" in table
    low, high = bootstrap_interval(np.array([1.0, 2.0, 3.0, 4.0]), np.mean)
    assert 1.0 <= low < 2.5 < high <= 4.0


def test_paired_comparison_against_a_hand_computed_difference():
    from l2o.evaluate import Evaluation, OptimizerResult
    from l2o.report import format_paired, paired_comparisons

    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 2.0, 200)
    ours = base * 0.8  # 20% lower on every instance: log10(0.8) = -0.0969, always wins
    other = rng.permutation(base)  # same distribution, unpaired with ours

    def result(final):
        return OptimizerResult(losses=np.stack([np.ones_like(final), final], axis=1), learning_rate=None)

    evaluation = Evaluation({"L2L": result(ours), "Base": result(base), "Shuffled": result(other)}, "toy", 1, 200, 0, 0)
    comparisons = paired_comparisons(evaluation)
    np.testing.assert_allclose(comparisons["Base"]["difference"], np.log10(0.8), rtol=1e-9)
    lo, hi = comparisons["Base"]["difference_ci95"]
    assert comparisons["Base"]["wins"] == 1.0 and hi - lo < 0.02  # pairing removes the instance spread
    lo_s, hi_s = comparisons["Shuffled"]["difference_ci95"]
    assert hi_s - lo_s > 3 * (hi - lo)
    assert "vs Base" in format_paired(evaluation)
    assert paired_comparisons(Evaluation({"Base": result(base)}, "toy", 1, 200, 0, 0)) == {}
