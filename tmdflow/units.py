"""Physical constants and unit conversions (CODATA 2018 values, as used by QE >= 6.6)."""

HARTREE_EV = 27.211386245988
RYDBERG_EV = HARTREE_EV / 2.0  # 13.605693122994
BOHR_ANGSTROM = 0.529177210903
MEV_PER_EV = 1000.0
