"""The offline decision engine: alerts on a virtual clock through the real pipeline, for
``remediator test`` (rule unit tests) and ``remediator replay`` (a recorded stream)."""
