"""The benchmark protocol end to end on a small setting: tuned Adam judged against itself,
Adam at 1e-3, the cache, and the command's output and errors."""

import importlib
import json

import jax
import numpy as np
import optax
import pytest

import l2o.benchmark
import l2o.optimizers.untuned
from l2o.benchmark import FINISHED_TASKS, BenchmarkSettings, benchmark, default_adam, instances, tuned_adam
from l2o.benchmark_metrics import ADAM_GRID, normalized_final_loss
from l2o.cli import main
from l2o.errors import L2OError
from l2o.evaluate import run_trajectories
from l2o.tasks import get_task

SMALL = BenchmarkSettings(num_steps=20, seeds=3, reference_multiple=2, window=1)


@pytest.fixture(scope="module")
def adam_default(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return benchmark(optax.adam(1e-3), "Adam 1e-3", ("quadratic",), SMALL, cache_dir=cache), cache


def test_adam_at_the_tuned_rate_has_speedup_one(adam_default):
    """The tuned Adam run against itself: it first reaches its own final loss at the last step
    (the quadratic's mean curve decreases), so its speedup and normalized final loss are 1."""
    (result, cache) = adam_default
    task = result.tasks[0]
    tuned = benchmark(optax.adam(task.tuned_learning_rate), "tuned", ("quadratic",), SMALL, cache_dir=cache).tasks[0]
    np.testing.assert_allclose(tuned.normalized_final_loss, 1.0, rtol=1e-5)
    assert np.all(tuned.speedup <= 1.0) and np.mean(tuned.speedup) > 0.9


def test_adam_at_its_default_rate_is_judged_as_its_own_baseline_row(adam_default):
    result, _ = adam_default
    task = result.tasks[0]
    np.testing.assert_array_equal(task.speedup, task.adam_default_speedup)
    np.testing.assert_array_equal(task.curves, task.adam_default)
    assert task.tuned_learning_rate > 1e-3 and np.all(task.speedup < 1)  # 1e-3 is slow on the quadratic
    assert np.all(task.normalized_final_loss > 1)
    summary = result.aggregate("speedup")
    assert summary["ci95"][0] <= summary["iqm"] <= summary["ci95"][1]


def test_tuned_adams_curves_are_cached(adam_default, monkeypatch):
    """A second benchmark of the same task and settings reads tuned Adam from disk."""
    result, cache = adam_default
    files = [path for path in cache.glob("quadratic-*.npz") if "grid_losses" in np.load(path)]
    assert len(files) == 1
    stored = np.load(files[0])
    assert stored["grid_losses"].shape == (15,)
    assert float(stored["learning_rate"]) == result.tasks[0].tuned_learning_rate
    assert stored["curves"].shape == (SMALL.seeds, SMALL.num_steps * SMALL.reference_multiple + 1)
    monkeypatch.setattr("l2o.benchmark.jax.jit", lambda *a, **k: pytest.fail("recomputed a cached grid"))
    np.testing.assert_array_equal(tuned_adam(None, "quadratic", {}, SMALL, cache).curves, stored["curves"])


def test_adam_at_its_default_rate_is_cached_once_for_every_optimizer(adam_default, monkeypatch):
    """Adam at 1e-3 is the same for every optimizer benchmarked: its test-instance curves are
    stored beside tuned Adam's, equal to a fresh run, and read back without computing."""
    result, cache = adam_default
    files = [path for path in cache.glob("quadratic-*.npz") if "grid_losses" not in np.load(path)]
    assert len(files) == 1
    task = get_task("quadratic")
    fresh = run_trajectories(task, optax.adam(1e-3), instances(task, SMALL), SMALL.num_steps)[0]
    np.testing.assert_allclose(np.load(files[0])["curves"], fresh, rtol=1e-6)
    np.testing.assert_array_equal(result.tasks[0].adam_default, np.load(files[0])["curves"])
    monkeypatch.setattr("l2o.benchmark.run_trajectories", lambda *a, **k: pytest.fail("recomputed Adam at 1e-3"))
    np.testing.assert_array_equal(default_adam(None, "quadratic", {}, SMALL, cache), np.load(files[0])["curves"])


def test_adam_is_tuned_on_instances_disjoint_from_the_test_ones(adam_default):
    """The grid's best rate on the tuning instances is the one reported, and the tuning
    instances are other problems than the test instances."""
    result, cache = adam_default
    tuned = tuned_adam(None, "quadratic", {}, SMALL, cache)
    assert tuned.learning_rate == ADAM_GRID[int(np.nanargmin(tuned.grid_losses))]
    task = get_task("quadratic")
    tuning, test = instances(task, SMALL, tuning=True), instances(task, SMALL)
    for a, b in zip(jax.tree.leaves(tuning[:2]), jax.tree.leaves(test[:2])):
        assert not np.any(np.all(np.isclose(np.asarray(a)[:, None], np.asarray(b)[None]),
                                 axis=tuple(range(2, np.ndim(a) + 1))))


def test_the_command_writes_the_promised_report(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("L2O_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "bench"
    assert main(["benchmark", "SGD", "--tasks", "quadratic", "--num_steps", "10", "--seeds", "2",
                 "--reference_multiple", "2", "--out", str(out)]) == 0
    report = json.loads((out / "benchmark.json").read_text())
    assert {"speedup", "normalized_final_loss"} <= set(report["tasks"]["quadratic"])
    assert len(report["iqm_speedup_ci95"]) == 2 and report["optimizer"] == "SGD 0.01"
    assert (out / "speedups.png").stat().st_size > 0 and (out / "curves-quadratic.png").is_file()
    assert not (out / FINISHED_TASKS).exists()  # kept only until the report is written
    capsys.readouterr()
    for argv, fragment in [(["benchmark", "Adma"], "neither a run directory, a shipped optimizer nor a baseline"),
                           (["benchmark", "Adam", "--tasks", "quadratc"], "unknown benchmark task quadratc"),
                           (["benchmark", "Adam", "--seeds", "0"], "--seeds must be a positive integer"),
                           (["benchmark", "Adam", "--schedule", "cosin"], "invalid choice: 'cosin'"),
                           (["benchmark", "SGD", "--tasks", "quadratic", "--out", str(out)], "already holds")]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and "\n" not in err


def test_an_interrupted_benchmark_continues_with_the_tasks_it_finished(tmp_path, capsys, monkeypatch):
    """A task's result is kept in OUT/finished-tasks as soon as it is done: the same command run
    again after an interruption reads it instead of running the task again and reports the same
    numbers as an uninterrupted run; once the report is written the folder is gone."""
    monkeypatch.setenv("L2O_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["benchmark", "SGD", "--tasks", "quadratic", "--num_steps", "10", "--seeds", "2",
            "--reference_multiple", "2"]
    out = tmp_path / "interrupted"

    def ctrl_c_while_writing_the_report(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("l2o.benchmark_report.write_report", ctrl_c_while_writing_the_report)
        assert main([*argv, "--out", str(out)]) == 130
    assert len(list((out / FINISHED_TASKS).glob("quadratic-*.npz"))) == 1

    ran = []
    real_task = l2o.benchmark.benchmark_task
    monkeypatch.setattr("l2o.benchmark.benchmark_task", lambda *args: ran.append(args[1]) or real_task(*args))
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 0 and ran == []
    assert "continuing an interrupted benchmark: quadratic finished before (1 of 1)" in capsys.readouterr().out
    assert not (out / FINISHED_TASKS).exists()
    assert main([*argv, "--out", str(tmp_path / "uninterrupted")]) == 0 and ran == ["quadratic"]
    reports = [json.loads((folder / "benchmark.json").read_text()) for folder in (out, tmp_path / "uninterrupted")]
    assert reports[0]["tasks"] == reports[1]["tasks"]


def test_a_task_interrupted_while_the_optimizer_runs_continues_from_its_stored_runs(tmp_path, capsys, monkeypatch):
    """Killed halfway through the optimizer's own runs, a benchmark leaves where they stand in
    OUT/finished-tasks; the same command continues from there and reports what an
    uninterrupted run reports."""
    module = importlib.import_module("l2o.evaluate")  # l2o.evaluate is also the function
    real_store = module._store_runs
    monkeypatch.setenv("L2O_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["benchmark", "SGD", "--tasks", "quadratic", "--num_steps", "10", "--seeds", "2",
            "--reference_multiple", "2"]
    out = tmp_path / "interrupted"

    def ctrl_c_halfway_through_the_optimizers_runs(partial, *args, **kwargs):
        real_store(partial, *args, **kwargs)
        step = args[5] if len(args) > 5 else 0  # (num_steps, num_problems, curves, tests, first, step, ...)
        if partial.parent.name == FINISHED_TASKS and step >= 5:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(module, "_store_runs", ctrl_c_halfway_through_the_optimizers_runs)
        assert main([*argv, "--out", str(out)]) == 130
    assert len(list((out / FINISHED_TASKS).glob("quadratic-*.partial.npz"))) == 1
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 0
    assert main([*argv, "--out", str(tmp_path / "uninterrupted")]) == 0
    reports = [json.loads((folder / "benchmark.json").read_text()) for folder in (out, tmp_path / "uninterrupted")]
    assert reports[0]["tasks"] == reports[1]["tasks"]


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_a_schedule_over_the_run_is_adam_with_that_learning_rate_schedule(tmp_path, capsys, monkeypatch, schedule):
    """`l2o benchmark Adam --schedule S` runs Adam at 1e-3 whose rate falls along S from 1e-3 at
    the first step to 0 at the budget: its curves are optax's Adam given that schedule as its
    learning rate, written independently here; the report names the schedule."""
    monkeypatch.setenv("L2O_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["benchmark", "Adam", "--tasks", "quadratic", "--num_steps", "20", "--seeds", "2",
            "--reference_multiple", "2", "--schedule", schedule]
    assert main([*argv, "--out", str(tmp_path / "bench")]) == 0
    report = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert report["optimizer"] == f"Adam 0.001, {schedule} over the run"
    rates = {"cosine": lambda step: 1e-3 * 0.5 * (1 + jax.numpy.cos(np.pi * step / 20)),
             "linear": lambda step: 1e-3 * (1 - step / 20)}[schedule]
    task = get_task("quadratic")
    settings = BenchmarkSettings(num_steps=20, seeds=2, reference_multiple=2)
    expected = run_trajectories(task, optax.adam(rates), instances(task, settings), 20)[0]
    tuned = tuned_adam(task, "quadratic", {}, settings, tmp_path / "cache" / "benchmark").curves
    judged = [normalized_final_loss(run, reference, settings.smoothing) for run, reference in zip(expected, tuned)]
    np.testing.assert_allclose(report["tasks"]["quadratic"]["normalized_final_loss_per_seed"], judged, rtol=1e-4)
    constant = run_trajectories(task, optax.adam(1e-3), instances(task, settings), 20)[0]
    assert not np.allclose(expected[:, -1], constant[:, -1], rtol=1e-3)  # the schedule changes the runs


def test_a_scheduled_optimizers_finished_tasks_are_its_own(tmp_path, adam_default):
    """The schedule is part of the optimizer's name and identity, so a benchmark with it never
    reads back the constant optimizer's finished tasks (nor the other way round)."""
    resolved = l2o.benchmark.resolve_optimizer("Adam")
    name, _, identity = l2o.benchmark.over_the_run(resolved, "cosine", 20)
    assert name != resolved[0] and identity != resolved[2]
    with pytest.raises(L2OError, match="unknown schedule 'cosin'; choose from constant, cosine, linear"):
        l2o.benchmark.over_the_run(resolved, "cosin", 20)


def test_a_stored_task_is_read_only_for_the_same_optimizer(tmp_path, adam_default, monkeypatch):
    """Results are stored under the optimizer's identity: another identity runs the task again."""
    _, cache = adam_default
    ran = []
    real_task = l2o.benchmark.benchmark_task
    monkeypatch.setattr("l2o.benchmark.benchmark_task", lambda *args: ran.append(args[2]) or real_task(*args))
    run = lambda identity: benchmark(optax.sgd(0.01), "SGD", ("quadratic",), SMALL, cache_dir=cache,
                                     finished_dir=tmp_path, optimizer_identity=identity).tasks[0]
    first, again, other = run("sgd-0.01"), run("sgd-0.01"), run("another optimizer")
    assert len(ran) == 2 and len(list(tmp_path.glob("quadratic-*.npz"))) == 2
    for field in ("curves", "tuned_adam", "speedup", "normalized_final_loss", "adam_default_speedup"):
        np.testing.assert_array_equal(getattr(again, field), getattr(first, field))
    assert again.tuned_learning_rate == first.tuned_learning_rate and isinstance(again.tuned_learning_rate, float)
    np.testing.assert_array_equal(other.curves, first.curves)  # the same optimizer here, run again


def test_bad_settings_are_refused():
    with pytest.raises(L2OError, match="num_steps"):
        BenchmarkSettings(num_steps=0)


PUBLISHED_SETTINGS = {"Muon": lambda: optax.contrib.muon(learning_rate=0.02),
                      "Prodigy": lambda: optax.contrib.prodigy(learning_rate=1.0),
                      "DAdaptAdamW": lambda: optax.contrib.dadapt_adamw(learning_rate=1.0)}


@pytest.mark.parametrize("name", list(l2o.optimizers.untuned.UNTUNED))
def test_an_untuned_optimizer_is_benchmarked_at_its_published_settings(name):
    """``l2o benchmark muon`` (any case) runs the optimizer exactly as its authors' defaults
    give it: the same updates over three steps on a matrix and a vector."""
    resolved_name, tx, identity = l2o.benchmark.resolve_optimizer(name.lower())
    assert resolved_name == name and name in identity
    reference = PUBLISHED_SETTINGS[name]()
    params = {"w": jax.random.normal(jax.random.PRNGKey(0), (6, 4)), "b": jax.numpy.ones(4)}
    states = tx.init(params), reference.init(params)
    for step in range(3):
        grads = {key: jax.numpy.sin(value * (step + 1.0)) for key, value in params.items()}
        (updates, state), (expected, reference_state) = (tx.update(grads, states[0], params),
                                                          reference.update(grads, states[1], params))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8), updates, expected)
        states, params = (state, reference_state), optax.apply_updates(params, updates)


def test_the_adam_grid_is_each_rates_own_run_and_continues_after_an_interruption(tmp_path, monkeypatch):
    """Every grid entry is the mean smoothed final loss of Adam at that rate, computed again with
    evaluate's run_trajectories; a grid interrupted after some rates keeps them and, called again,
    computes only the others and gives the same grid as an uninterrupted call."""
    from l2o.benchmark import grid_losses
    from l2o.benchmark_metrics import smoothed

    task, rates = get_task("quadratic"), ADAM_GRID[8:12]
    problems = instances(task, SMALL, tuning=True)
    grid = grid_losses(task, problems, SMALL, rates)
    for rate, loss in zip(rates, grid):
        curves = run_trajectories(task, optax.adam(rate), problems, SMALL.num_steps)[0]
        np.testing.assert_allclose(loss, np.mean([smoothed(c, SMALL.smoothing)[-1] for c in curves]), rtol=1e-6)

    partial, writes = tmp_path / "grid.npz", []
    real_write = l2o.benchmark.write_arrays

    def interrupted_after_two_rates(path, **arrays):
        real_write(path, **arrays)
        writes.append(len(arrays["losses"]))
        if len(writes) == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("l2o.benchmark.write_arrays", interrupted_after_two_rates)
        with pytest.raises(KeyboardInterrupt):
            grid_losses(task, problems, SMALL, rates, partial=partial)
    smoothings = []
    monkeypatch.setattr("l2o.benchmark.smoothed", lambda *args: smoothings.append(1) or smoothed(*args))
    np.testing.assert_array_equal(grid_losses(task, problems, SMALL, rates, partial=partial), grid)
    assert len(smoothings) == 2 * SMALL.seeds  # the two rates left
    smoothings.clear()
    np.testing.assert_array_equal(grid_losses(task, problems, SMALL, ADAM_GRID[:2], partial=partial),
                                  grid_losses(task, problems, SMALL, ADAM_GRID[:2]))  # another grid's file is not read
    assert len(smoothings) == 4 * SMALL.seeds


def test_a_finished_grid_leaves_only_the_cache_entry(tmp_path):
    tuned_adam(get_task("quadratic"), "quadratic", {}, SMALL, tmp_path)
    assert [path.name.endswith(".grid.npz") for path in tmp_path.iterdir()] == [False]

