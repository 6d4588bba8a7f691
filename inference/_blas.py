"""One host BLAS thread while population algorithms run their small dense linear algebra.

On a CPU backend XLA hands dense linear algebra (``eigh``, Cholesky, triangular solves of a
``D x D`` metric) to the host LAPACK that jaxlib loads (SciPy's OpenBLAS), whose own worker
threads then compete for the cores with XLA's thread pool. Matrices of the size TSMC fits (a few
dozen to a few hundred rows) gain nothing from those threads and lose much to the contention:
on a shared 2-core machine, TSMC's warm runs (defaults, same key, the two settings interleaved in
one process, 3 runs each) took a median 4.3 s against 11.1 s on the pendulum
and 76 s against 94 s on the acrobot, with identical results. One thread also keeps a run's speed
independent of how many cores the host's BLAS would otherwise claim.
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
