"""Linear-quadratic regulator: the problem with a closed-form answer.

A planar point mass (state ``[px, py, vx, vy]``, action = acceleration ``[ax, ay]``) driven to the
origin. Exact zero-order-hold discretisation with ``dt = 0.1``::

    x_{t+1} = A x_t + B u_t,   A = [[I, dt I], [0, I]],   B = [[dt^2/2 I], [dt I]]

Cost ``J(u) = sum_t (x_t' Q x_t + u_t' R u_t) + x_T' Q_f x_T`` with ``Q = I``, ``R = 0.1 I``,
``Q_f = 10 I``; horizon 20 (40 decision variables); start ``x_0 = [1, -1, 0.5, 0]``; unbounded
actions; default temperature 1.

Because the cost is quadratic in ``u`` and the prior Gaussian, the tilted target of
``trajectory_model`` is Gaussian and its normalising constant is known: ``gaussian_target``
gives them from explicit block matrices (no automatic differentiation), which is how the tests
check the inference algorithms. The reference cost is the exact minimiser's, computed the same way.
"""

import numpy as np
import jax.numpy as jnp

from ppl_control import ControlProblem

DEFAULTS = dict(dt=0.1, horizon=20, x0=(1.0, -1.0, 0.5, 0.0), q=1.0, r=0.1, qf=10.0, temperature=1.0)


def matrices(dt: float = DEFAULTS["dt"]) -> tuple[np.ndarray, np.ndarray]:
    """``(A, B)`` of the discretised planar double integrator."""
    eye = np.eye(2)
    a = np.block([[eye, dt * eye], [np.zeros((2, 2)), eye]])
    b = np.vstack([0.5 * dt**2 * eye, dt * eye])
    return a, b


def _settings(overrides):
    unknown = set(overrides) - set(DEFAULTS) - {"A", "B"}
    if unknown:
        raise ValueError(f"lqr.problem: unknown overrides {sorted(unknown)}; known: {sorted(DEFAULTS)} + A, B")
    s = dict(DEFAULTS, **overrides)
    a, b = matrices(s["dt"])
    s["A"] = np.asarray(overrides.get("A", a), dtype=np.float64)
    s["B"] = np.asarray(overrides.get("B", b), dtype=np.float64)
    s["x0"] = np.asarray(s["x0"], dtype=np.float64)
    return s


def problem(**overrides) -> ControlProblem:
    """The LQR problem; ``overrides`` may set dt, horizon, x0, q, r, qf, temperature, A, B."""
    s = _settings(overrides)
    a, b = jnp.asarray(s["A"]), jnp.asarray(s["B"])
    q, r, qf = s["q"], s["r"], s["qf"]
    return ControlProblem(
        step=lambda x, u: a @ x + b @ u,
        stage_cost=lambda x, u: q * jnp.dot(x, x) + r * jnp.dot(u, u),
        terminal_cost=lambda x: qf * jnp.dot(x, x),
        x0=jnp.asarray(s["x0"]),
        horizon=int(s["horizon"]),
        action_dim=b.shape[1],
        name="lqr",
        temperature=float(s["temperature"]),
        reference_cost=_exact_minimum(s),
    )


def _quadratic_form(s):
    """``(H, g, c)`` with ``J(u) = u'Hu/2 + g'u + c`` for the flattened controls ``u``."""
    a, b, x0, horizon = s["A"], s["B"], s["x0"], int(s["horizon"])
    n, m = b.shape
    # x_t = Phi_t x0 + Gamma_t u, stacked for t = 0..T.
    phi = [np.linalg.matrix_power(a, t) for t in range(horizon + 1)]
    gamma = np.zeros((horizon + 1, n, horizon * m))
    for t in range(1, horizon + 1):
        for k in range(t):
            gamma[t, :, k * m:(k + 1) * m] = phi[t - 1 - k] @ b
    weights = [s["q"]] * horizon + [s["qf"]]
    h = 2.0 * s["r"] * np.eye(horizon * m)
    g = np.zeros(horizon * m)
    c = 0.0
    for t in range(horizon + 1):
        free = phi[t] @ x0
        h += 2.0 * weights[t] * gamma[t].T @ gamma[t]
        g += 2.0 * weights[t] * gamma[t].T @ free
        c += weights[t] * free @ free
    return h, g, c


def _exact_minimum(s) -> float:
    h, g, c = _quadratic_form(s)
    u = -np.linalg.solve(h, g)
    return float(0.5 * u @ h @ u + g @ u + c)


def gaussian_target(prior_scale: float = 1.0, **overrides):
    """The exact target of ``trajectory_model(problem(**overrides), prior_scale=prior_scale)``.

    The density ``N(u; 0, s^2 I) exp(-J(u) / lam)`` with ``J(u) = u'Hu/2 + g'u + c`` is Gaussian
    with precision ``P = I/s^2 + H/lam`` and mean ``-P^{-1} g / lam``; its integral is::

        log Z = -d/2 log(s^2) - 1/2 log det P + 1/2 b' P^{-1} b - c/lam,   b = -g/lam

    Returns:
      ``(mean, covariance, log_z)`` in float64; mean and covariance over the controls flattened in
      ``(time, action)`` order, matching ``controls.reshape(-1)``.
    """
    s = _settings(overrides)
    h, g, c = _quadratic_form(s)
    lam, d = s["temperature"], h.shape[0]
    precision = np.eye(d) / prior_scale**2 + h / lam
    cov = np.linalg.inv(precision)
    b = -g / lam
    mean = cov @ b
    log_z = -0.5 * d * np.log(prior_scale**2) - 0.5 * np.linalg.slogdet(precision)[1] + 0.5 * b @ mean - c / lam
    return mean, cov, float(log_z)
