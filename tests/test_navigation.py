"""Navigation: the homotopy classifier, the symmetry, and TSMC keeping both modes alive."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import TSMC

nav = models.navigation


def _straight_path(y_mid, num=41):
    """A path from (-2.5, 0) to (2.5, 0) through (0, y_mid), piecewise linear, as states."""
    x = np.linspace(-2.5, 2.5, num)
    y = y_mid * (1 - np.abs(x) / 2.5)
    return np.stack([x, y, np.zeros_like(x), np.zeros_like(x)], axis=-1)


def test_classifier_labels_the_gap_a_path_uses():
    # gaps of the default column: below -2.4 | -1.2 .. -0.6 | 0.6 .. 1.2 | above 2.4
    paths = np.stack([_straight_path(y) for y in (-3.0, -0.9, 0.9, 3.0)])
    np.testing.assert_array_equal(np.asarray(nav.homotopy_class(paths)), [0, 1, 2, 3])
    # a single path, and a path that stops short of the column (judged at its nearest step)
    assert int(nav.homotopy_class(_straight_path(0.9))) == 2
    short = _straight_path(-0.9)[:15]
    assert short[-1, 0] < 0 and int(nav.homotopy_class(short)) == 1


def test_cost_is_mirror_symmetric():
    problem = nav.problem()
    u = jax.random.uniform(jax.random.key(0), (8,) + problem.controls_shape, minval=-3, maxval=3)
    u = u.at[..., 0].set(jnp.abs(u[..., 0]))  # push forward, so every path crosses the column
    mirrored = u * jnp.array([1.0, -1.0])
    np.testing.assert_allclose(jax.vmap(problem.cost)(u), jax.vmap(problem.cost)(mirrored), rtol=1e-5)
    states = jax.vmap(problem.trajectory)(u)
    mirror_states = jax.vmap(problem.trajectory)(mirrored)
    classes, mirror_classes = nav.homotopy_class(states), nav.homotopy_class(mirror_states)
    np.testing.assert_array_equal(np.asarray(classes) + np.asarray(mirror_classes), 3)


def test_invalid_obstacles_raise():
    with pytest.raises(ValueError, match="obstacles"):
        nav.problem(obstacles=((0.0, 0.0),))


@pytest.mark.slow
def test_tsmc_keeps_both_optimal_homotopy_classes_near_the_optimum():
    """At the shipped temperature TSMC as it ships keeps both mirror-image routes, each with a
    near-optimal path (the temperature was chosen for that: see the module docstring).

    Once the routes separate, resampling lets their shares drift like a random walk: over seeds
    0 to 5 the smaller one held 4 to 35% of the weight, and each route's best path was 9 to 12%
    above the reference (seed 0, checked here: 21%, and 9.6% and 9.7%). So the check is that
    neither route is lost (at least 2% of the weight, 5 particles) and that each keeps a path
    within 12% of the reference."""
    problem = nav.problem()
    result = TSMC(pc.trajectory_model(problem), num_particles=256, progress_bar=False).run(jax.random.key(0))
    states = jax.vmap(problem.trajectory)(jnp.asarray(result.samples["controls"]))
    classes = np.asarray(nav.homotopy_class(states))
    mass = np.bincount(classes, weights=result.weights, minlength=4)
    # the two mirror-image optimal classes, above and below the central disc, both survive
    assert mass[1] >= 0.02 and mass[2] >= 0.02, mass
    # and each class's best path is within 12% of the reference cost
    for c in (1, 2):
        assert np.min(result.samples["cost"][classes == c]) < 1.12 * problem.reference_cost
