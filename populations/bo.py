"""A Composer-style Bayesian-optimisation proposer over the whole layer string (FACTS §4).

Composer searches 16-layer arrangements with Bayesian optimisation (about 100 trials). This
proposer is that search engine behind the `BaseProposer` interface, so a population can run it
as an agent (``proposer = "bo"``):

- **Data**: the good nodes of the tree it is given (arrangement, validation fitness); buggy and
  unfinished nodes, and proposals that do not parse to ``length`` layers of ``alphabet``, are
  left out. Equal arrangements are averaged.
- **Surrogate**: scikit-learn's `GaussianProcessRegressor` on the one-hot encoding of the layers
  (``length × |alphabet|`` binary features), kernel ``C · RBF(ℓ) + White``. On one-hot vectors
  the squared distance is twice the Hamming distance, so the RBF is a Hamming kernel
  ``exp(-hamming / ℓ²)``; C, ℓ and the noise level are fitted by maximum likelihood.
  ``normalize_y`` puts the targets on a unit scale.
- **Acquisition**: expected improvement over the best observed fitness,
  ``EI = (μ - f* - ξ)·Φ(z) + σ·φ(z)``, ``z = (μ - f* - ξ)/σ`` (signs flipped when minimising),
  maximised over a finite candidate pool: ``n_random`` uniform arrangements plus ``n_mutants``
  mutants (1–3 point mutations) of the ``n_elite`` best arrangements, and for Improve and Debug
  also ``n_mutants`` mutants of the parent. Candidates already in the tree are skipped.
- **Warm-up**: with fewer than ``n_init`` distinct observations there is nothing to model yet:
  Draft samples uniformly, Improve and Debug mutate the parent.

Deterministic under the rng: candidates come from it and the GP optimiser's restarts are seeded
from it. Pure and synchronous; beyond numpy it needs scikit-learn (with scipy and threadpoolctl,
which scikit-learn brings).
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from threadpoolctl import threadpool_limits

from populations.arrangement import PRIMITIVES, Arrangement, ArrangementError, random_arrangement
from populations.proposers import BaseProposer
from populations.records import Action, Operator, Proposal
from populations.tree import SearchTree

__all__ = ["BOProposer", "expected_improvement", "one_hot"]

_Layers = tuple[str, ...]


def one_hot(arrangements: list[_Layers], alphabet: tuple[str, ...]) -> np.ndarray:
    """(n, length·|alphabet|) float array: row r, column i·|alphabet| + a is 1 iff layer i = a."""
    index = {p: a for a, p in enumerate(alphabet)}
    n, length, k = len(arrangements), len(arrangements[0]), len(alphabet)
    out = np.zeros((n, length * k))
    for r, layers in enumerate(arrangements):
        for i, p in enumerate(layers):
            out[r, i * k + index[p]] = 1.0
    return out


def expected_improvement(
    mu: np.ndarray, sigma: np.ndarray, best: float, *, xi: float, maximize: bool
) -> np.ndarray:
    """EI of each candidate (posterior mean ``mu``, std ``sigma``) over ``best``; 0 where σ = 0."""
    gain = (mu - best - xi) if maximize else (best - mu - xi)
    safe = np.where(sigma > 0, sigma, 1.0)
    z = gain / safe
    ei = gain * norm.cdf(z) + safe * norm.pdf(z)
    return np.where(sigma > 0, ei, np.maximum(gain, 0.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class BOProposer(BaseProposer):
    """Gaussian-process expected-improvement proposals (module docstring).

    Attributes:
        alphabet: primitives of the search space.
        length: number of layers (16 in the paper).
        maximize: whether higher fitness is better (MAD accuracy: True; LM loss: False).
        n_init: distinct observations needed before the GP is used.
        n_random: uniform candidates per proposal.
        n_mutants: mutants of the elite (and of the parent) per proposal.
        n_elite: how many of the best arrangements are mutated.
        xi: EI's exploration margin, in fitness units.
        max_tries: kept for the registry's common parameters (candidates are never repeats).
    """

    name: ClassVar[str] = "bo"
    alphabet: tuple[str, ...] = PRIMITIVES
    length: int = 16
    maximize: bool = True
    n_init: int = 8
    n_random: int = 256
    n_mutants: int = 256
    n_elite: int = 4
    xi: float = 0.0
    max_tries: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "alphabet", tuple(self.alphabet))
        if not self.alphabet or any(p not in PRIMITIVES for p in self.alphabet):
            raise ValueError(f"alphabet must be a non-empty subset of {PRIMITIVES}")
        if len(set(self.alphabet)) < 2:
            raise ValueError("alphabet needs at least two primitives to search")
        for name in ("length", "n_init", "n_elite", "max_tries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_random < 0 or self.n_mutants < 0 or self.n_random + self.n_mutants < 1:
            raise ValueError("n_random and n_mutants must be >= 0 and not both 0")
        if self.xi < 0:
            raise ValueError(f"xi must be >= 0, got {self.xi}")

    def propose(self, action: Action, tree: SearchTree, rng: random.Random) -> Proposal:
        op = action.operator
        parent: _Layers | None = None
        if op in (Operator.IMPROVE, Operator.DEBUG):
            if action.parent_id is None or action.parent_id not in tree:
                raise ValueError(f"{op.value} needs a parent in the tree, got {action.parent_id}")
            parent = self._parse(tree[action.parent_id].proposal)
        elif op is not Operator.DRAFT:
            raise ValueError(f"BOProposer cannot answer operator {op.value!r}")
        data = self._observations(tree)
        if len(data) < self.n_init:
            layers, plan = self._warm_up(parent, rng, len(data))
        else:
            layers, plan = self._acquire(data, parent, tree, rng)
        return Proposal(action=action, text=" ".join(layers), plan=f"{op.value}: {plan}")

    # -- internals ------------------------------------------------------------------------------

    def _parse(self, text: str) -> _Layers | None:
        try:
            return Arrangement.parse(text, alphabet=self.alphabet, length=self.length).layers
        except ArrangementError:
            return None

    def _observations(self, tree: SearchTree) -> dict[_Layers, float]:
        sums: dict[_Layers, tuple[float, int]] = {}
        for record in tree.good_nodes():
            layers = self._parse(record.proposal)
            if (
                layers is None
                or record.val_fitness is None
                or record.val_fitness != record.val_fitness
            ):
                continue
            total, n = sums.get(layers, (0.0, 0))
            sums[layers] = (total + record.val_fitness, n + 1)
        return {layers: total / n for layers, (total, n) in sums.items()}

    def _mutant(self, layers: _Layers, rng: random.Random) -> _Layers:
        out = list(layers)
        for i in rng.sample(range(self.length), rng.randint(1, min(3, self.length))):
            out[i] = rng.choice([p for p in self.alphabet if p != out[i]])
        return tuple(out)

    def _warm_up(
        self, parent: _Layers | None, rng: random.Random, n_seen: int
    ) -> tuple[_Layers, str]:
        note = f"warm-up ({n_seen} of {self.n_init} observations before the GP is used)"
        if parent is None:
            return random_arrangement(rng, self.alphabet, self.length).layers, f"{note}: random"
        return self._mutant(parent, rng), f"{note}: mutated the parent"

    def _pool(
        self,
        data: dict[_Layers, float],
        parent: _Layers | None,
        tree: SearchTree,
        rng: random.Random,
    ) -> list[_Layers]:
        sign = 1.0 if self.maximize else -1.0
        elite = sorted(data, key=lambda k: -sign * data[k])[: self.n_elite]
        raw: list[_Layers] = [
            random_arrangement(rng, self.alphabet, self.length).layers
            for _ in range(self.n_random)
        ]
        raw += [self._mutant(elite[i % len(elite)], rng) for i in range(self.n_mutants)]
        if parent is not None:
            raw += [self._mutant(parent, rng) for _ in range(self.n_mutants)]
        seen: set[_Layers] = set()
        pool: list[_Layers] = []
        for layers in raw:
            if layers in seen or layers in data or tree.has_proposal_key(" ".join(layers)):
                continue
            seen.add(layers)
            pool.append(layers)
        return pool

    def _acquire(
        self,
        data: dict[_Layers, float],
        parent: _Layers | None,
        tree: SearchTree,
        rng: random.Random,
    ) -> tuple[_Layers, str]:
        pool = self._pool(data, parent, tree, rng)
        if not pool:
            layers = random_arrangement(rng, self.alphabet, self.length).layers
            return layers, "every candidate was already in the tree; random"
        observed = list(data)
        x = one_hot(observed, self.alphabet)
        y = np.array([data[k] for k in observed])
        scale = float(np.sqrt(self.length))
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(scale, (1e-1, 1e2)) + WhiteKernel(
            1e-2, (1e-6, 1e1)
        )
        gp = GaussianProcessRegressor(
            kernel=kernel, normalize_y=True, random_state=rng.randrange(2**31)
        )
        # One BLAS thread: these matrices are tiny, and on a shared machine more threads only
        # contend (measured 4.6x slower on 2 busy cores).
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            # Bounds reached or an ill-conditioned optimum are normal on tiny data sets.
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            gp.fit(x, y)
            mu, sigma = gp.predict(one_hot(pool, self.alphabet), return_std=True)
        best = float(y.max() if self.maximize else y.min())
        ei = expected_improvement(mu, sigma, best, xi=self.xi, maximize=self.maximize)
        pick = int(np.argmax(ei))
        plan = (
            f"GP expected improvement {ei[pick]:.4g} over best {best:.4f} "
            f"(mean {mu[pick]:.4f}, std {sigma[pick]:.4f}; {len(observed)} observations, "
            f"{len(pool)} candidates)"
        )
        return pool[pick], plan
