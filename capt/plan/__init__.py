"""Pure planning: ClusterSpec + availability zones -> what capt will build on AWS.

Nothing in this package performs I/O, reads a clock or draws randomness that is not seeded by
the spec, so workflows can call it directly (it is deterministic) and `capt plan` can print it
without AWS credentials.
"""
