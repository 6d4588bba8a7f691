"""Plain numpy/python re-implementations of the problem library's costs, for the tests.

Written from the equations in each module's docstring (and, for the acrobot, from Gym's
``Acrobot-v1`` "book" dynamics), with explicit loops and no JAX, so a test comparing them with
``problem.cost`` checks the JAX code against an independent computation.
"""

import math

import numpy as np


def _rk4(f, x, u, dt):
    k1 = f(x, u)
    k2 = f(x + dt / 2 * k1, u)
    k3 = f(x + dt / 2 * k2, u)
    k4 = f(x + dt * k3, u)
    return x + dt * (k1 + 2 * k2 + 2 * k3 + k4) / 6


def pendulum_cost(u, dt=0.05, max_torque=5.0):
    th, om, total = 0.0, 0.0, 0.0
    for a in np.clip(u[:, 0], -max_torque, max_torque):
        total += 1 + math.cos(th) + 0.01 * om * om + 0.01 * a * a
        om = om + dt * (-9.81 * math.sin(th) - 0.1 * om + a)
        th = th + dt * om
    return total + 20 * (1 + math.cos(th)) + 0.5 * om * om


def cartpole_cost(u, dt=0.05, max_force=10.0, integrator="rk4"):
    mc, mp, l, g = 1.0, 0.3, 0.5, 9.81

    def f(s, force):
        x, th, xd, thd = s
        sn, cs = math.sin(th), math.cos(th)
        den = mc + mp * sn * sn
        xdd = (force + mp * sn * (l * thd * thd + g * cs)) / den
        thdd = (-force * cs - mp * l * thd * thd * cs * sn - (mc + mp) * g * sn) / (l * den)
        return np.array([xd, thd, xdd, thdd])

    s, total = np.zeros(4), 0.0
    for a in np.clip(u[:, 0], -max_force, max_force):
        total += 1 + math.cos(s[1]) + 0.1 * s[0] ** 2 + 0.01 * s[3] ** 2 + 0.001 * a * a
        s = _rk4(f, s, a, dt) if integrator == "rk4" else s + dt * f(s, a)
    return total + 20 * (1 + math.cos(s[1])) + 2 * s[0] ** 2 + 0.5 * (s[2] ** 2 + s[3] ** 2)


def acrobot_cost(u, dt=0.05, max_torque=6.0, integrator="rk4"):
    # Gym Acrobot-v1, book_or_nips="book", without its velocity clipping.
    m1 = m2 = 1.0
    l1 = 1.0
    lc1 = lc2 = 0.5
    i1 = i2 = 1.0
    g = 9.8

    def dsdt(s, a):
        theta1, theta2, dtheta1, dtheta2 = s
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * math.cos(theta2)) + i1 + i2
        d2 = m2 * (lc2**2 + l1 * lc2 * math.cos(theta2)) + i2
        phi2 = m2 * lc2 * g * math.cos(theta1 + theta2 - math.pi / 2.0)
        phi1 = (-m2 * l1 * lc2 * dtheta2**2 * math.sin(theta2)
                - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * math.sin(theta2)
                + (m1 * lc1 + m2 * l1) * g * math.cos(theta1 - math.pi / 2) + phi2)
        ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * math.sin(theta2) - phi2) / (
            m2 * lc2**2 + i2 - d2**2 / d1)
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return np.array([dtheta1, dtheta2, ddtheta1, ddtheta2])

    def height(s):
        return -math.cos(s[0]) - math.cos(s[0] + s[1])

    s, total = np.zeros(4), 0.0
    for a in np.clip(u[:, 0], -max_torque, max_torque):
        total += (2 - height(s)) + 0.01 * (s[2] ** 2 + s[3] ** 2) + 0.01 * a * a
        s = _rk4(dsdt, s, a, dt) if integrator == "rk4" else s + dt * dsdt(s, a)
    return total + 20 * (2 - height(s)) + 0.5 * (s[2] ** 2 + s[3] ** 2)


def double_integrator_cost(u, dt=0.1, max_accel=1.0):
    p, v, total = -2.0, 0.0, 0.0
    for a in np.clip(u[:, 0], -max_accel, max_accel):
        total += p * p + 0.1 * v * v + 0.01 * a * a
        p, v = p + dt * v + dt * dt / 2 * a, v + dt * a
    return total + 10 * (p * p + v * v)


def navigation_cost(u, dt=0.1, max_accel=3.0):
    discs = [(0.0, 0.0, 0.6), (0.0, 1.8, 0.6), (0.0, -1.8, 0.6)]
    p, v, total = np.array([-2.5, 0.0]), np.zeros(2), 0.0
    for a in np.clip(u, -max_accel, max_accel):
        total += 0.05 * float(a @ a)
        for cx, cy, r in discs:
            depth = r + 0.1 - math.hypot(p[0] - cx, p[1] - cy)
            total += 200 * max(depth, 0.0) ** 2
        p, v = p + dt * v + dt * dt / 2 * a, v + dt * a
    return total + 20 * float((p - [2.5, 0.0]) @ (p - [2.5, 0.0])) + 2 * float(v @ v)


def unicycle_cost(u, dt=0.1):
    def f(s, a):
        return np.array([a[0] * math.cos(s[2]), a[0] * math.sin(s[2]), a[1]])

    s, total = np.zeros(3), 0.0
    for a in np.clip(u, [-1.0, -1.5], [1.0, 1.5]):
        total += 0.1 * a[0] ** 2 + 0.05 * a[1] ** 2
        s = _rk4(f, s, a, dt)
    return total + 50 * (s[0] ** 2 + (s[1] - 1) ** 2) + 10 * (1 - math.cos(s[2]))


def reservoir_cost(u):
    horizon = u.shape[0]
    rain = np.zeros((horizon, 3))
    for t in range(horizon):
        rain[t, :] = 0.03 * (1 + math.sin(2 * math.pi * t / 40))
    rain[8, 0] += 0.5
    rain[16, 1] += 0.4
    rain[24, 0] += 0.5
    levels, total = [0.5, 0.5, 0.5], 0.0
    for t in range(horizon):
        upstream = 0.0
        for i in range(3):
            avail = levels[i] + rain[t, i] + upstream
            out = min(0.2 * min(max(u[t, i], 0.0), 1.0), avail)
            spill = max(avail - out - 1.0, 0.0)
            levels[i] = avail - out - spill
            total += 10 * spill + (1.0 if spill > 0 else 0.0) + 0.1 * out
            upstream = out
        short = max(0.08 - upstream, 0.0)
        total += 20 * short + (1.0 if short > 0 else 0.0)
    return total + 20 * sum(max(0.5 - level, 0.0) ** 2 for level in levels)


COSTS = {
    "pendulum": pendulum_cost,
    "cartpole": cartpole_cost,
    "acrobot": acrobot_cost,
    "double_integrator": double_integrator_cost,
    "navigation": navigation_cost,
    "unicycle": unicycle_cost,
    "reservoir": reservoir_cost,
}
