"""Inference algorithms, one interface: ``Algo(model, **config).run(rng_key, *args, **kwargs)``.

Every algorithm returns a ``ppl_control.Result``; swapping one for another is a one-word change.
"""

from .tsmc import TSMC as TSMC

__all__ = ["TSMC"]
