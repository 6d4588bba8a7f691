"""Inference algorithms, one interface: ``Algo(model, **config).run(rng_key, *args, **kwargs)``.

Every algorithm returns a ``ppl_control.Result``; swapping one for another is a one-word change.
"""

from .cem import CEM as CEM
from .mdpo import MDPO as MDPO
from .mdpo import GradientDescent as GradientDescent
from .mppi import MPPI as MPPI
from .nuts import NUTS as NUTS
from .tsmc import TSMC as TSMC

__all__ = ["CEM", "GradientDescent", "MDPO", "MPPI", "NUTS", "TSMC"]
