"""Pure Cluster API arithmetic, each rule once: versions and skew, placement, fenceposts, quorum,
health.

Imports nothing of capt (import-linter checks it) and does no I/O, reads no clock and draws no
randomness, so workflows call it directly. Kept empty: workflow sandboxes import this package.
"""
