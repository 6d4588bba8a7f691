"""The one exception type of the library."""


class InferenceError(RuntimeError):
    """An inference run cannot go on: say why, in terms of the user's model or configuration.

    Raised, for example, when every particle's cost is non-finite, so no particle can carry weight.
    Configuration mistakes that can be seen before running (``num_particles < 2``) raise
    ``ValueError`` instead.
    """
