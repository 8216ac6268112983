"""Synthetic customers with a known latent process: events for demos, tests, benchmarks.

Pure domain code (numpy; orjson only for broken lines), no I/O: `simulate(config)` draws a
Pareto/NBD population with Gamma-Gamma spend, taste clusters with category transitions,
interactions that carry the churn signal, customer events, and optional noise.
:mod:`streams.simulate` writes the events and the truth to files.

>>> sim = simulate(SimulationConfig(customers=5, days=30, seed=1))
>>> sum(1 for _ in sim.events()) == sum(sim.counts().values())
True
"""

from models.simulation.catalog import CATEGORIES, CLUSTER_NAMES
from models.simulation.config import SimulationConfig
from models.simulation.simulation import Simulation, simulate
from models.simulation.truth import TRUTH_COLUMNS

__all__ = [
    "CATEGORIES",
    "CLUSTER_NAMES",
    "TRUTH_COLUMNS",
    "Simulation",
    "SimulationConfig",
    "simulate",
]
