"""The workload simulator: plays the instances of the local stack and their clusters.

Its own process (`python -m capt.dev.simulator`, started by `capt dev up`); the worker never imports it.
See simulator.world for the model, simulator.server for what it serves.
"""
