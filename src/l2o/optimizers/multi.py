"""Several optimizers on one model: parameter groups chosen by path, each with its optimizer.

DeepMind's ``simple-multi`` (a learned optimizer for ``x_0``, Adam for ``x_1``) and
``cifar-multi`` (one learned optimizer for convolution kernels, another for everything else)
are instances. Any mix of learned architectures and hand-designed baselines is allowed; the
learned groups' meta-parameters form one ``theta = {group name: theta_group}`` and are
meta-trained jointly. Built on :func:`optax.multi_transform`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar, Mapping, NamedTuple, Sequence

import jax
import optax

from l2o.errors import L2OError
from l2o.optimizers.baselines import get_baseline

PyTree = Any


class Group(NamedTuple):
    """One parameter group.

    Attributes:
      name: the group's name (its key in ``theta`` when learned).
      pattern: regular expression matched in full against a parameter's path, the keys and
        indices from the root joined by ``/`` (e.g. ``conv/0/w``, ``x_1``).
      optimizer: a learned architecture name (``l2o.optimizers.LEARNED``) or a baseline name
        (``l2o.optimizers.BASELINES``).
      options: the learned architecture's hyperparameters, or the baseline's keyword arguments
        (``learning_rate`` required).
    """

    name: str
    pattern: str
    optimizer: str
    options: Mapping[str, Any] = {}


def path_string(path: Sequence) -> str:
    """``jax.tree_util`` key path -> ``"a/0/b"``."""
    parts = []
    for entry in path:
        for attribute in ("key", "idx", "name"):
            if hasattr(entry, attribute):
                parts.append(str(getattr(entry, attribute)))
                break
    return "/".join(parts)


def param_labels(params: PyTree, patterns: Sequence[tuple[str, str]]) -> PyTree:
    """The group name of every leaf of ``params``: the first ``(name, pattern)`` whose pattern
    matches the leaf's path in full."""
    compiled = [(name, re.compile(pattern)) for name, pattern in patterns]

    def label(path, _):
        where = path_string(path)
        for name, regex in compiled:
            if regex.fullmatch(where):
                return name
        raise L2OError(
            f"parameter {where!r} matches no group pattern ({', '.join(p for _, p in patterns)}); "
            "add a group whose pattern matches it, e.g. '.*' last"
        )

    return jax.tree_util.tree_map_with_path(label, params)


@dataclasses.dataclass(frozen=True)
class Multi:
    """Optimizers assigned to parameter groups; a learned optimizer whose ``theta`` is
    ``{group name: theta}`` over the learned groups.

    Example (DeepMind's ``simple-multi``)::

        Multi(groups=[{"name": "learned", "pattern": "x_0", "optimizer": "DM"},
                      {"name": "adam", "pattern": ".*", "optimizer": "Adam",
                       "options": {"learning_rate": 0.1}}])

    Args:
      groups: :class:`Group` entries (or dicts with the same keys), tried in order.
    """

    groups: tuple = ()
    name: ClassVar[str] = "Multi"

    def __post_init__(self):
        from l2o.optimizers import BASELINES, LEARNED  # the registry includes this class

        try:
            groups = tuple(Group(**g) if isinstance(g, Mapping) else Group(*g) for g in self.groups)
        except TypeError as error:
            raise L2OError(f"bad Multi group ({error}); each needs name, pattern, optimizer and optional "
                           "options") from None
        if not groups:
            raise L2OError("Multi needs at least one group, e.g. {'name': 'all', 'pattern': '.*', 'optimizer': 'DM'}")
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise L2OError(f"Multi group names must be unique, got {names}")
        baselines = {name.lower() for name in BASELINES}
        for g in groups:
            if g.optimizer == self.name or (g.optimizer not in LEARNED and g.optimizer.lower() not in baselines):
                learned = ", ".join(k for k in LEARNED if k != self.name)
                raise L2OError(f"group {g.name!r}: unknown optimizer {g.optimizer!r}; choose a learned one "
                               f"({learned}) or a baseline ({', '.join(BASELINES)})")
            try:
                re.compile(g.pattern)
            except re.error as error:
                raise L2OError(f"group {g.name!r}: bad pattern {g.pattern!r} ({error})") from None
        object.__setattr__(self, "groups", tuple(g._replace(options=dict(g.options)) for g in groups))
        self._learned()  # each learned group's hyperparameters are checked now, not at first use

    def _learned(self) -> dict:
        from l2o.optimizers import LEARNED, get_learned

        return {g.name: get_learned(g.optimizer, **g.options) for g in self.groups if g.optimizer in LEARNED}

    def init(self, key: jax.Array) -> dict:
        """``{group name: theta}`` for every learned group, from independent keys."""
        learned = self._learned()
        return {name: lopt.init(jax.random.fold_in(key, i)) for i, (name, lopt) in enumerate(learned.items())}

    def transform(self, theta: Mapping[str, PyTree]) -> optax.GradientTransformationExtraArgs:
        """The combined optimizer: each group's leaves updated by the group's optimizer."""
        learned = self._learned()
        transforms = {}
        for g in self.groups:
            if g.name in learned:
                transforms[g.name] = learned[g.name].transform(theta[g.name])
            else:
                options = dict(g.options)
                if "learning_rate" not in options:
                    raise L2OError(f"group {g.name!r}: baseline {g.optimizer} needs options.learning_rate")
                try:
                    transforms[g.name] = get_baseline(g.optimizer)(**options)
                except TypeError as error:
                    raise L2OError(f"group {g.name!r}: bad options for {g.optimizer}: {error}") from None
        patterns = [(g.name, g.pattern) for g in self.groups]
        return optax.with_extra_args_support(
            optax.multi_transform(transforms, lambda params: param_labels(params, patterns))
        )
