"""Validation during meta-training: final losses on fixed instances of each problem."""

from __future__ import annotations

import functools

import jax
import numpy as np

from l2o.meta.unroll import trajectory
from l2o.metrics import validation_score
from l2o.tasks import draw_problems


def final_losses(task, tx, problems, num_steps: int) -> jax.Array:
    """``(instances,)`` final training losses of ``tx`` on ``problems`` (instances, initial
    parameters and keys, each with a leading instance axis) after ``num_steps`` steps."""
    run = lambda inst, params, key: trajectory(task, tx, inst, params, key, num_steps)[0][-1]
    return jax.vmap(run)(*problems)


class Validation:
    """Scores meta-parameters on fixed validation instances of each task (one compiled program
    per task and horizon).

    Args:
      tasks: the task families, unscaled; lopt: the learned architecture.
      keys: one PRNG key per task, drawing its ``num_instances`` validation instances.
      log_objective: score with the log of the final losses (:func:`l2o.metrics.validation_score`).
    """

    def __init__(self, tasks, lopt, keys: list, num_instances: int, log_objective: bool):
        self.tasks, self.lopt, self.log_objective = tasks, lopt, log_objective
        self.instances = [draw_problems(task, key, num_instances) for task, key in zip(tasks, keys)]
        self._programs: dict = {}

    def final_losses(self, num_steps: int, problem: int):
        """``theta -> (num_instances,)`` final losses on task ``problem``'s instances."""
        if (problem, num_steps) not in self._programs:
            lopt = self.lopt

            @jax.jit
            def program(task, problems, theta):
                return final_losses(task, lopt.transform(theta), problems, num_steps)

            self._programs[(problem, num_steps)] = functools.partial(
                program, self.tasks[problem], self.instances[problem])
        return self._programs[(problem, num_steps)]

    def scores(self, theta, num_steps: int) -> list[float]:
        """The score of ``theta`` on each task after ``num_steps`` steps (lower is better)."""
        return [validation_score(np.asarray(self.final_losses(num_steps, problem)(theta)), self.log_objective)
                for problem in range(len(self.tasks))]
