"""``Result``: what every inference algorithm returns."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Result:
    """The outcome of one inference run, the same shape for every algorithm.

    Attributes:
      method: the algorithm's name (``"tsmc"``, ``"mdpo"``, ...).
      samples: site name -> array with a leading particle axis: latent sites in constrained space
        and deterministic sites (``cost`` among them).
      log_weights: normalised log weights, shape ``(num_particles,)`` (``logsumexp == 0``).
      log_evidence: the estimate of ``log Z`` (``log`` of the normalising constant of the tilted
        target), or ``None`` for methods that have none.
      stats: name -> array with a leading stage (TSMC) or iteration axis.
      particle_stats: name -> per-particle array (``lp``, ``acceptance_rate``, ``diverging``...).
      log_likelihood: observed site -> per-particle log density, for ArviZ's log_likelihood group.
      config: the algorithm's configuration, recorded as ArviZ attributes.
    """

    method: str
    samples: dict
    log_weights: jax.Array
    log_evidence: float | None = None
    stats: dict = dataclasses.field(default_factory=dict)
    particle_stats: dict = dataclasses.field(default_factory=dict)
    log_likelihood: dict = dataclasses.field(default_factory=dict)
    config: dict = dataclasses.field(default_factory=dict)

    @property
    def num_particles(self) -> int:
        return int(jnp.shape(self.log_weights)[0])

    @property
    def weights(self) -> np.ndarray:
        """Normalised weights (sum to one); zero for particles whose cost was not finite."""
        return np.exp(np.asarray(self.log_weights, dtype=np.float64))

    def best_index(self) -> int:
        """The index of the lowest-cost particle (non-finite costs never win).

        Falls back to the highest-weight particle for models without a ``cost`` site.
        """
        if "cost" in self.samples:
            cost = np.asarray(self.samples["cost"], dtype=np.float64).reshape(self.num_particles, -1)
            cost = np.where(np.isfinite(cost), cost, np.inf).sum(axis=1)
            return int(np.argmin(cost))
        return int(np.argmax(np.asarray(self.log_weights)))

    def best(self) -> dict[str, Any]:
        """The sites of the lowest-cost particle."""
        i = self.best_index()
        return {name: value[i] for name, value in self.samples.items()}

    def to_arviz(self):
        """This result as an ArviZ ``xarray.DataTree`` (see ``ppl_control.to_arviz``)."""
        from ._arviz import to_arviz

        return to_arviz(self)

    def __repr__(self) -> str:
        cost = ""
        if "cost" in self.samples:
            c = np.asarray(self.samples["cost"], dtype=np.float64)
            finite = c[np.isfinite(c)]
            if finite.size:
                cost = f", best_cost={finite.min():.4g}, mean_cost={finite.mean():.4g}"
        evidence = "" if self.log_evidence is None else f", log_evidence={self.log_evidence:.4g}"
        return f"Result(method={self.method!r}, num_particles={self.num_particles}{cost}{evidence})"
