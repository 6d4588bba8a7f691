"""Where a population of particles lives and how it is evaluated: devices, batches, host threads.

Two knobs every population algorithm shares, neither of which changes what is computed:

* **Devices.** The particle axis is sharded over a one-axis ``jax.sharding.Mesh`` (axis name
  ``"particles"``) with ``NamedSharding``: each device holds ``N / num_devices`` particles and
  evaluates the model for those. The algorithms' population statistics (sums over particles:
  weights, ESS, covariances, ...) are ordinary ``jnp`` reductions inside the compiled step; XLA's
  SPMD partitioner (GSPMD) turns them into all-reduces across devices, and resampling into one
  all-gather per stage. With several processes (``jax.distributed.initialize``) the mesh spans
  every process's devices. With one device nothing is annotated, so single-device programs are
  exactly what they would be without this module.
* **Batches.** ``batch_size`` bounds how many particles each device evaluates at once: the
  population is mapped in sequential batches (``lax.map`` over a vmapped function), so the
  memory of a reverse pass through a long rollout grows with the batch, not the population.

(The third, host BLAS threads, is ``inference._blas``.)
"""

import numbers
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "particles"
# The Result.config entries that say where the particles live: they never change what is computed,
# so checkpoint fingerprints leave them out (a run may resume on other devices or batches).
LAYOUT_FIELDS = ("num_devices", "batch_size")


def _device_count_for(num_particles: int, available: int) -> int:
    """The most devices, at most ``available``, that split ``num_particles`` evenly."""
    return max(k for k in range(1, available + 1) if num_particles % k == 0)


def particle_mesh(devices, num_particles: int) -> Mesh | None:
    """The one-axis mesh the particles are sharded over, or ``None`` for a single device.

    Args:
      devices: ``None`` (every device, ``jax.devices()``, across all processes after
        ``jax.distributed.initialize``; if ``num_particles`` is not a multiple of their number,
        the most of them that divide it evenly), a sequence of devices, or a one-axis
        ``jax.sharding.Mesh``.
      num_particles: the population size; an explicit ``devices`` must divide it evenly.

    Raises:
      ValueError: a mesh with more than one axis, an empty device list, or explicit devices whose
        number does not divide ``num_particles``.
    """
    if devices is None:
        available = jax.devices()
        devices = available[: _device_count_for(num_particles, len(available))]
    if isinstance(devices, Mesh):
        if len(devices.axis_names) != 1:
            raise ValueError(
                f"devices: the particles are sharded over a one-axis mesh, got axes {devices.axis_names}"
            )
        devices = list(devices.devices.flat)
    devices = list(devices)
    if not devices:
        raise ValueError("devices: need at least one device")
    if num_particles % len(devices):
        raise ValueError(
            f"num_particles ({num_particles}) must be a multiple of the number of devices the particles "
            f"are sharded over ({len(devices)}): each device holds an equal share. Choose "
            f"num_particles divisible by {len(devices)}, or pass devices= with fewer devices."
        )
    if len(devices) == 1:
        return None
    return Mesh(np.array(devices), (AXIS,))


def check_batch_size(batch_size) -> int | None:
    if batch_size is None:
        return None
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    return int(batch_size)


def batch_shape(per_device: int, batch_size: int | None) -> tuple[int, int]:
    """``(num_batches, per_batch)``: the fewest sequential batches of at most ``batch_size``
    particles that ``per_device`` particles split into, and the (equal) size of each; when
    ``batch_size`` does not divide ``per_device`` the last batch is padded, so
    ``num_batches * per_batch >= per_device``. ``(1, per_device)`` without a ``batch_size``."""
    if batch_size is None or batch_size >= per_device:
        return 1, per_device
    batches = -(-per_device // batch_size)
    return batches, -(-per_device // batches)


def _take_clipped(x, size: int, axis: int):
    """``x`` cut or padded to ``size`` along ``axis``, padding with copies of the last entry
    (real particles, so padded evaluations stay finite; their results are dropped)."""
    index = jnp.minimum(jnp.arange(size), x.shape[axis] - 1)
    return x[index] if axis == 0 else x[:, index]


class ParticleLayout(NamedTuple):
    """How a population of ``num_particles`` is spread over devices and evaluated in batches.

    Built once per algorithm instance (``ParticleLayout.build``); hashable, so compiled steps
    capture it.
    """

    num_particles: int
    mesh: Mesh | None
    batch_size: int | None

    @classmethod
    def build(cls, num_particles: int, devices=None, batch_size=None) -> "ParticleLayout":
        return cls(num_particles, particle_mesh(devices, num_particles), check_batch_size(batch_size))

    @property
    def num_devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    @property
    def config(self) -> dict:
        """What a ``Result.config`` records about the layout."""
        return dict(zip(LAYOUT_FIELDS, (self.num_devices, self.batch_size)))

    @property
    def sharding(self) -> NamedSharding | None:
        """The sharding of an array whose leading axis is the particles (``None``: one device)."""
        return None if self.mesh is None else NamedSharding(self.mesh, P(AXIS))

    @property
    def replicated(self) -> NamedSharding | None:
        return None if self.mesh is None else NamedSharding(self.mesh, P())

    def _is_particle_axis(self, x) -> bool:
        return jnp.ndim(x) >= 1 and jnp.shape(x)[0] == self.num_particles

    def constrain(self, tree):
        """Inside a compiled function: shard every leaf of ``tree`` whose leading axis is the
        particles (the others are left to the partitioner). The identity on one device."""
        if self.mesh is None:
            return tree
        spec = self.sharding
        return jax.tree.map(lambda x: lax.with_sharding_constraint(x, spec) if self._is_particle_axis(x) else x, tree)

    def replicate(self, tree):
        """Inside a compiled function: a full copy of every leaf on every device (one all-gather),
        for work that reads all particles many times over (the temperature bisection). The
        identity on one device."""
        if self.mesh is None:
            return tree
        return jax.tree.map(lambda x: lax.with_sharding_constraint(x, self.replicated), tree)

    def put(self, tree):
        """Outside a compiled function: place host arrays (a loaded checkpoint, say) on the mesh,
        particle-axis leaves sharded and the rest replicated. ``jnp.asarray`` on one device."""
        if self.mesh is None:
            return jax.tree.map(jnp.asarray, tree)
        return jax.tree.map(
            lambda x: jax.device_put(x, self.sharding if self._is_particle_axis(x) else self.replicated), tree
        )

    def map(self, fn: Callable) -> Callable:
        """``jax.vmap(fn)`` over the leading (particle) axis of every argument, spread over the
        devices and evaluated in sequential batches of at most ``batch_size`` particles per device
        when that is set.

        Any leading size ``m`` works (CEM evaluates only its fresh draws, say): it is padded to a
        multiple of the number of devices and of the batch shape with copies of real particles,
        whose results are dropped. When ``m`` is ``num_particles`` (divisible by the devices) each
        device keeps its own particles: on device ``d``, batch ``j`` holds its particles
        ``j, j + B, j + 2B, ...`` (``B`` batches), so no particle crosses devices. Per particle
        the arithmetic is that of ``jax.vmap(fn)``.
        """
        vmapped = jax.vmap(fn)
        devices = self.num_devices
        if devices == 1 and self.batch_size is None:
            return vmapped
        inner = None if self.mesh is None else NamedSharding(self.mesh, P(None, AXIS))

        def mapped(*args):
            m = jax.tree.leaves(args)[0].shape[0]
            per_device = -(-m // devices)
            batches, per_batch = batch_shape(per_device, self.batch_size)
            padded = batches * per_batch

            def split(x):  # (m, ...) -> (batches, devices * per_batch, ...)
                if devices * per_device != m:
                    x = _take_clipped(x, devices * per_device, 0)
                x = x.reshape((devices, per_device) + x.shape[1:])
                if padded != per_device:
                    x = _take_clipped(x, padded, 1)
                x = x.reshape((devices, per_batch, batches) + x.shape[2:])
                x = x.swapaxes(1, 2).swapaxes(0, 1)  # (batches, devices, per_batch, ...)
                x = x.reshape((batches, devices * per_batch) + x.shape[3:])
                return x if inner is None else lax.with_sharding_constraint(x, inner)

            def merge(y):  # the inverse of split
                y = y.reshape((batches, devices, per_batch) + y.shape[2:])
                y = y.swapaxes(0, 1).swapaxes(1, 2).reshape((devices, padded) + y.shape[3:])[:, :per_device]
                return y.reshape((devices * per_device,) + y.shape[2:])[:m]

            if batches == 1:
                out = vmapped(*jax.tree.map(lambda x: split(x)[0], args))
                out = jax.tree.map(lambda y: merge(y[None]), out)
            else:
                out = jax.tree.map(merge, lax.map(lambda batch: vmapped(*batch), jax.tree.map(split, args)))
            return self.constrain(out) if m == self.num_particles else out

        return mapped


def to_host(tree):
    """``jax.device_get`` that also works when arrays span several processes (gathered from
    all of them; every process must call it)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return jax.device_get(x)

    return jax.tree.map(get, tree)
