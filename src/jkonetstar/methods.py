"""The registry of every method the pipeline trains: names, families, figure labels, options, limits.

One owner for these facts. The Snakefile and the config schema (which must not load JAX at every parse),
the figures, the command line and the library's dispatch all read this module; it imports nothing but
the standard library. A method is data:

- a JKOnet* solver (:class:`SolverSpec`, family ``"jkonet-star"``, trained by :mod:`jkonetstar.training` on
  optimal-transport couplings): which energy terms it learns and how they are parametrised;
- a JKOnet baseline (:class:`BaselineSpec`, family ``"jkonet"``, trained by :mod:`jkonetstar.baselines`
  on the training trajectories through an inner JKO step): which transport map its inner step uses.

Adding a JKOnet*-style solver is one :class:`SolverSpec` line in :data:`METHODS` and its hyper-parameters in
the configs; code that needs to know what a method is asks its spec (``spec.family``, ``spec.closed_form``,
``spec.options``), never its name.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

__all__ = [
    "FAMILIES",
    "SolverSpec",
    "BaselineSpec",
    "Method",
    "METHODS",
    "SOLVERS",
    "BASELINES",
    "get",
    "names",
    "label",
    "MAX_FEATURES",
    "feature_count",
    "PREDICT_OPTIONS",
    "FEATURE_DEFAULTS",
]

FAMILIES = ("jkonet-star", "jkonet")
"""Method families: the JKOnet* solvers (couplings + first-order condition) and the JKOnet baselines."""

MAX_FEATURES = 5000
"""Largest feature count the closed-form solvers accept (the normal matrix is MAX_FEATURES^2)."""

FEATURE_DEFAULTS = {"degree": 4, "rbf_per_dim": 10}
"""Default size settings of the linear solvers' feature map (jkonetstar.features.feature_map)."""

PREDICT_OPTIONS = ("predict_step", "implicit_tolerance", "implicit_max_iterations", "implicit_solver")
"""Prediction settings of the JKOnet* solvers: evaluation settings (choosing them never retrains)."""

# Training settings by kind of method (the config's `solvers.<name>` keys a training job receives).
_ADAM = ("epochs", "batch_size", "learning_rate", "eval_every", "hidden", "clip_norm")
_STAR_MLP = (*_ADAM, "tau", "gradient_at", "lr_schedule", "select", "validation_ratio")
_STAR_LINEAR = ("tau", "ridge", "features", "gradient_at")
_BASELINE = (*_ADAM, "tau", "inner_steps", "inner_learning_rate", "epsilon", "predict_step")


def feature_count(dim: int, degree: int = FEATURE_DEFAULTS["degree"],
                  rbf_per_dim: int = FEATURE_DEFAULTS["rbf_per_dim"]) -> int:
    """Number of features of the linear solvers in dimension ``dim``: ``(degree+1)^d - 1`` monomials
    (all exponents in ``{0..degree}^d`` but the constant) plus ``rbf_per_dim^d`` Gaussian bumps."""
    return (degree + 1) ** dim - 1 + rbf_per_dim**dim


@dataclasses.dataclass(frozen=True)
class SolverSpec:
    """A JKOnet* solver: what it learns and how.

    Attributes:
        name: the solver's name in configs and on the command line.
        potential, interaction, internal: which energy terms (V, W, beta * int rho log rho) are learnt.
        parametrisation: ``"mlp"`` (trained by Adam) or ``"linear"`` (closed-form least squares, Prop. 3.4).
        time_dependent: V takes ``(x, t)``; prediction then uses the implicit step (paper App. B).
        label: legend name (the paper's notation, LaTeX for matplotlib).
    """

    name: str
    potential: bool = True
    interaction: bool = False
    internal: bool = False
    parametrisation: str = "mlp"
    time_dependent: bool = False
    label: str = dataclasses.field(default="", compare=False)
    family: ClassVar[str] = "jkonet-star"

    @property
    def closed_form(self) -> bool:
        """Solved in closed form (no epochs, no minibatches)."""
        return self.parametrisation == "linear"

    @property
    def options(self) -> tuple[str, ...]:
        """The training settings this solver takes (its prediction settings: :data:`PREDICT_OPTIONS`)."""
        if self.closed_form:
            return _STAR_LINEAR
        return (*_STAR_MLP, "interaction_average") if self.interaction else _STAR_MLP

    @property
    def evaluation_options(self) -> tuple[str, ...]:
        return PREDICT_OPTIONS

    @property
    def pairwise(self) -> bool:
        """Its loss sums over pairs of particles (an MLP interaction term: O(batch^2) per minibatch)."""
        return self.interaction and not self.closed_form


@dataclasses.dataclass(frozen=True)
class BaselineSpec:
    """A JKOnet baseline: what its inner JKO step uses for the transport map.

    Attributes:
        name: the baseline's name in configs (``jkonet``, ``jkonet-vanilla``, ``jkonet-monge-gap``).
        transport: ``"icnn"`` (``T = grad psi``, ``psi`` an input-convex network) or ``"mlp"`` (``T = grad psi``,
            ``psi`` a softplus MLP [64, 64], as the upstream vanilla variant).
        monge_gap: weight of the Monge-gap regulariser in the inner objective (0: none).
        label: legend name.
    """

    name: str
    transport: str = "icnn"
    monge_gap: float = 0.0
    label: str = dataclasses.field(default="", compare=False)
    family: ClassVar[str] = "jkonet"
    # What the shared code asks of every method (a baseline learns one time-independent potential).
    potential: ClassVar[bool] = True
    interaction: ClassVar[bool] = False
    internal: ClassVar[bool] = False
    time_dependent: ClassVar[bool] = False
    closed_form: ClassVar[bool] = False
    pairwise: ClassVar[bool] = False

    @property
    def options(self) -> tuple[str, ...]:
        return _BASELINE

    @property
    def evaluation_options(self) -> tuple[str, ...]:
        """The baselines predict with their own inner loop: its step and iteration settings."""
        return ("predict_step", "inner_steps", "inner_learning_rate")


Method = SolverSpec | BaselineSpec

METHODS: dict[str, Method] = {
    spec.name: spec
    for spec in (
        SolverSpec("jkonet-star", interaction=True, internal=True, label=r"JKOnet$^*$"),
        SolverSpec("jkonet-star-potential", label=r"JKOnet$^*_{V}$"),
        SolverSpec("jkonet-star-potential-internal", internal=True, label=r"JKOnet$^*_{V,\beta}$"),
        SolverSpec("jkonet-star-time-potential", time_dependent=True, label=r"JKOnet$^*_{V(t)}$"),
        SolverSpec("jkonet-star-linear", interaction=True, internal=True, parametrisation="linear",
                   label=r"JKOnet$^*_{l}$"),
        SolverSpec("jkonet-star-linear-potential", parametrisation="linear", label=r"JKOnet$^*_{l,V}$"),
        SolverSpec("jkonet-star-linear-potential-internal", internal=True, parametrisation="linear",
                   label=r"JKOnet$^*_{l,V,\beta}$"),
        SolverSpec("jkonet-star-linear-interaction", potential=False, interaction=True, parametrisation="linear",
                   label=r"JKOnet$^*_{l,W}$"),
        BaselineSpec("jkonet", transport="icnn", label="JKOnet"),
        BaselineSpec("jkonet-vanilla", transport="mlp", label="JKOnet-vanilla"),
        BaselineSpec("jkonet-monge-gap", transport="mlp", monge_gap=1.0, label="JKOnet-Monge-gap"),
    )
}
"""Every method by name (paper names: JKOnet*, JKOnet*_V, ..., JKOnet*_l, JKOnet*_{l,V}; JKOnet, JKOnet-vanilla;
the Monge-gap variant is not in the paper's figures)."""

SOLVERS: dict[str, SolverSpec] = {n: m for n, m in METHODS.items() if m.family == "jkonet-star"}
BASELINES: dict[str, BaselineSpec] = {n: m for n, m in METHODS.items() if m.family == "jkonet"}


def get(name: str, family: str | None = None) -> Method:
    """Returns the spec of method ``name`` (of ``family``, if given); raises ValueError listing the choices."""
    choices = names(family)
    if name not in choices:
        what = "method" if family is None else {"jkonet-star": "solver", "jkonet": "baseline"}[family]
        raise ValueError(f"unknown {what} {name!r}: choose one of {choices}")
    return METHODS[name]


def names(family: str | None = None) -> list[str]:
    """The registered method names (of one family), in registry order."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown method family {family!r}: choose one of {list(FAMILIES)}")
    return [name for name, spec in METHODS.items() if family is None or spec.family == family]


def label(name: str) -> str:
    """The legend label of method ``name`` (the name itself for an unregistered one)."""
    spec = METHODS.get(name)
    return spec.label if spec is not None and spec.label else name
