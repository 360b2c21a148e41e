"""`l2o compare`: benchmarks side by side on their common tasks, IQMs computed again over those
tasks (checked by hand), and refusals where the numbers would not mean the same thing."""

import json

import numpy as np
import pytest

from l2o.benchmark import BenchmarkResult, BenchmarkSettings, TaskResult
from l2o.benchmark_comparison import compare, format_markdown
from l2o.benchmark_report import to_json
from l2o.cli import main
from l2o.io import write_json

SETTINGS = BenchmarkSettings(num_steps=2, seeds=4, reference_multiple=4, window=1)


def task(name, speedups, losses, learning_rate=1e-3):
    """A task result with the given per-seed metrics; a seed whose loss is ``inf`` diverged."""
    seeds = len(speedups)
    curves = np.ones((seeds, 3))
    curves[:, -1] = np.where(np.isfinite(losses), 1.0, np.nan)
    return TaskResult(name, curves, np.ones((seeds, 3)), np.ones((seeds, 9)), learning_rate,
                      np.asarray(speedups, float), np.asarray(losses, float), np.zeros(seeds), np.ones(seeds))


def stored(folder, optimizer, tasks, settings=SETTINGS, identity=None):
    """Writes the benchmark.json that `l2o benchmark` writes for these results into ``folder``."""
    write_json(folder / "benchmark.json", to_json(BenchmarkResult(optimizer, settings, tasks, identity)))
    return folder


def hand_iqm(values):
    """Mean of the middle half of sorted values (a multiple of 4 of them, so the cut is exact)."""
    values = np.sort(np.ravel(values))
    quarter = len(values) // 4
    return values[quarter: len(values) - quarter].mean()


@pytest.fixture
def two(tmp_path):
    a = stored(tmp_path / "a", "A", [task("quadratic", [0.5, 1, 2, 8], [1, 2, 3, 4]),
                                     task("mnist", [4, 4, 4, 4], [0.5, 0.5, 0.5, 0.5], 1e-2)])
    b = stored(tmp_path / "b", "B", [task("quadratic", [1, 1, 1, 3], [1, 1, 1, np.inf])])
    return a, b


def test_benchmarks_are_compared_on_the_tasks_all_of_them_hold(two):
    """B lacks mnist: A's IQM is computed again over quadratic alone (not read from its report),
    and mnist is named as left out."""
    comparison = compare(list(two))
    assert comparison.labels == ["A", "B"] and comparison.tasks == ["quadratic"]
    assert comparison.left_out == {"mnist": ["A"]}
    speed = comparison.aggregate("speedup")
    assert speed[0]["iqm"] == pytest.approx(hand_iqm([0.5, 1, 2, 8])) == 1.5
    assert speed[1]["iqm"] == pytest.approx(1.0)
    assert json.loads((two[0] / "benchmark.json").read_text())["iqm_speedup"] != pytest.approx(1.5)
    for summary in speed:
        assert summary["ci95"][0] <= summary["iqm"] <= summary["ci95"][1]


def test_a_diverged_seed_counts_as_an_infinite_loss_not_as_a_missing_one(two):
    """B's fourth seed diverged (its loss is null in JSON): it is the largest value, so the IQM of
    the losses drops it by rank, and the table counts it."""
    comparison = compare(list(two))
    assert np.isinf(comparison.normalized_final_loss[1, 0, 3])
    loss = comparison.aggregate("normalized_final_loss")[1]
    assert loss["iqm"] == pytest.approx(1.0) and loss["ci95"] == [1.0, np.inf]  # resamples with 2 of them: inf
    assert comparison.diverged_seeds.tolist() == [[0], [1]]
    table = format_markdown(comparison)
    assert "| diverged seeds |  | 0 |  | 1 |  |" in table and "mnist (only A)" in table


def test_the_iqm_of_a_full_comparison_is_the_benchmarks_own(tmp_path, two):
    """On the same tasks, each optimizer's IQM and interval are those its own report holds."""
    a, _ = two
    c = stored(tmp_path / "c", "C", [task("quadratic", [2, 2, 3, 3], [1, 1, 1, 1]),
                                     task("mnist", [1, 2, 3, 4], [1, 1, 2, 2], 1e-2)])
    comparison = compare([a, c], ["first", "second"])
    for folder, summary in zip((a, c), comparison.aggregate("speedup")):
        report = json.loads((folder / "benchmark.json").read_text())
        assert summary["iqm"] == pytest.approx(report["iqm_speedup"])
        assert summary["ci95"] == pytest.approx(report["iqm_speedup_ci95"])


def test_one_optimizers_benchmarks_of_disjoint_tasks_joined_with_plus_are_one_benchmark(tmp_path, two):
    """A's two tasks benchmarked into two folders and joined: the same per-seed values, IQM and
    interval as A's own two-task report, whatever the order of the join."""
    a, b = two
    report = json.loads((a / "benchmark.json").read_text())
    first = stored(tmp_path / "a-quadratic", "A", [task("quadratic", [0.5, 1, 2, 8], [1, 2, 3, 4])], identity="w")
    later = stored(tmp_path / "a-mnist", "A", [task("mnist", [4, 4, 4, 4], [0.5, 0.5, 0.5, 0.5], 1e-2)])
    whole = compare([a, a])
    for join in (f"{first}+{later}", f"{later}+{first}"):
        joined = compare([a, join])
        assert joined.tasks == ["quadratic", "mnist"] and joined.labels == [str(a), join]  # two of A: by folder
        np.testing.assert_array_equal(joined.speedup, whole.speedup)
        speed = joined.aggregate("speedup")[1]
        assert speed["iqm"] == pytest.approx(report["iqm_speedup"])
        assert speed["ci95"] == pytest.approx(report["iqm_speedup_ci95"])
    assert compare([f"{first}+{later}", b]).aggregate("speedup")[0]["iqm"] == pytest.approx(1.5)


def test_the_command_prints_the_table_and_writes_its_files(tmp_path, two, capsys):
    out = tmp_path / "comparison"
    assert main(["compare", *map(str, two), "--labels", "mine,theirs", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| quadratic | 0.001 | 2.88 | 2.500 | 1.50 | inf |" in printed
    assert "**1.50 [" in printed
    report = json.loads((out / "comparison.json").read_text())
    assert report["optimizers"]["mine"]["iqm_speedup"] == pytest.approx(1.5)
    assert report["left_out"] == {"mnist": ["mine"]}
    assert (out / "comparison.png").stat().st_size > 0 and "compare" in (out / "comparison.md").read_text()


def test_comparisons_that_would_mislead_are_refused(tmp_path, two, capsys):
    a, b = two
    other = stored(tmp_path / "steps", "S", [task("quadratic", [1, 1, 1, 1], [1, 1, 1, 1])],
                   BenchmarkSettings(num_steps=3, seeds=4, reference_multiple=4, window=1))
    rate = stored(tmp_path / "rate", "R", [task("quadratic", [1, 1, 1, 1], [1, 1, 1, 1], 1e-2)])
    disjoint = stored(tmp_path / "disjoint", "D", [task("Conv_Cifar10_8_16x32", [1, 1, 1, 1], [1, 1, 1, 1])])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "benchmark.json").write_text('{"optimizer": "x", "tasks": {}}')
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "comparison.md").write_text("an earlier comparison")
    a_mnist = stored(tmp_path / "a-mnist", "A", [task("mnist", [1, 1, 1, 1], [1, 1, 1, 1], 1e-2)], identity="v1")
    a_steps = stored(tmp_path / "a-steps", "A", [task("Conv_Cifar10_8_16x32", [1] * 4, [1] * 4)],
                     BenchmarkSettings(num_steps=3, seeds=4, reference_multiple=4, window=1))
    retrained = stored(tmp_path / "a-retrained", "A", [task("Conv_Cifar10_8_16x32", [1] * 4, [1] * 4)], identity="v2")
    joins = [(f"{a}+{b}", "is a benchmark of B"), (f"{a_mnist}+{retrained}", "(another definition or weights)"),
             (f"{a_mnist}+{a_steps}", "num_steps 3"), (f"{a}+{a_mnist}", "mnist is in both"),
             (f"{a}+{tmp_path / 'nowhere'}", "holds no benchmark.json")]
    cases = [([b, join], fragment) for join, fragment in joins]
    cases += [([a, other], "num_steps 3"), ([a, rate], "tuned Adam's learning rate differs"),
              ([a, disjoint], "no task is in every benchmark"), ([a, tmp_path / "nowhere"], "holds no benchmark.json"),
              ([a, tmp_path / "broken"], "is not a report of `l2o benchmark`"),
              ([a, b, "--labels", "one"], "1 labels for 2 benchmarks"),
              ([a, b, "--out", tmp_path / "done"], "already holds a comparison")]
    for argv, fragment in cases:
        assert main(["compare", *map(str, argv)]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and "\n" not in err and "Traceback" not in err, err
    assert (tmp_path / "done" / "comparison.md").read_text() == "an earlier comparison"
