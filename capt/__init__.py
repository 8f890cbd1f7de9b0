"""capt: Cluster API as durable Temporal workflows.

Kept empty on purpose: every workflow sandbox imports this package, so anything re-exported here
would run (and be re-imported) inside each sandbox. See docs/architecture.md for the layers.
"""
