"""One host BLAS thread while population algorithms run their small dense linear algebra.

On a CPU backend XLA hands dense linear algebra (``eigh``, Cholesky, triangular solves of a
``D x D`` metric) to the host LAPACK that jaxlib loads (SciPy's OpenBLAS), whose own worker
threads then compete for the cores with XLA's thread pool. Matrices of the size TSMC fits (a few
dozen to a few hundred rows) gain nothing from those threads and lose much to the contention:
measured on a shared 2-core machine, TSMC's warm run took 2.9-3.9 s (pendulum) and 34-36 s
(acrobot) with one BLAS thread against 4.2-4.4 s and 42 s with OpenBLAS's default, the same
results otherwise. One thread also makes a run independent of the host's core count.
"""

import contextlib


@contextlib.contextmanager
def single_threaded_blas():
    """Limit the host BLAS / LAPACK thread pools to one thread inside the block.

    Process-wide while active (BLAS thread pools are global) and restored on exit. A no-op where
    ``threadpoolctl`` cannot find a BLAS library.
    """
    from threadpoolctl import threadpool_limits

    import scipy.linalg  # noqa: F401  (loads the LAPACK jaxlib calls, so the limit reaches it)

    with threadpool_limits(limits=1, user_api="blas"):
        yield
