"""ppl_control: optimal control as probabilistic inference on NumPyro models.

A control problem is a NumPyro model whose latent sites are the decision variables and whose
cost enters as the Boltzmann likelihood ``exp(-J / lambda)``; solving it is inference, with the
algorithms of ``ppl_control.inference``. Ready-made problems live in ``ppl_control.models``.
"""

from ._boltzmann import boltzmann as boltzmann
from ._errors import InferenceError as InferenceError
from ._logdensity import LogDensity as LogDensity
from ._logdensity import log_density as log_density
from ._problem import ControlProblem as ControlProblem
from ._problem import control_prior as control_prior
from ._problem import trajectory_model as trajectory_model
from ._result import Result as Result
from ._policy import NOISE_TREATMENTS as NOISE_TREATMENTS
from ._policy import closed_loop_rollout as closed_loop_rollout
from ._policy import policy_action as policy_action
from ._policy import policy_cost as policy_cost
from ._policy import policy_model as policy_model
from ._policy import trained_policy as trained_policy
from ._rollout import rollout as rollout
from ._arviz import to_arviz as to_arviz
from ._mpc import ClosedLoop as ClosedLoop
from ._mpc import mpc as mpc

__version__ = "0.1.0"

__all__ = [
    "ClosedLoop",
    "ControlProblem",
    "InferenceError",
    "LogDensity",
    "NOISE_TREATMENTS",
    "Result",
    "boltzmann",
    "control_prior",
    "log_density",
    "mpc",
    "closed_loop_rollout",
    "policy_action",
    "policy_cost",
    "policy_model",
    "trained_policy",
    "rollout",
    "to_arviz",
    "trajectory_model",
]
