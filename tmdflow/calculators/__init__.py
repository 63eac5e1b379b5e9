"""Calculator adapters.  Each adapter separates the machine side (a *profile*: executables,
MPI launcher, process count) from the code side (write inputs for a step, run, parse)."""

from .base import get_calculator, register_calculator, registered_calculators

__all__ = ["get_calculator", "register_calculator", "registered_calculators"]
