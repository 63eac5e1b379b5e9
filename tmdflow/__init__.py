"""tmdflow: first-principles spin-orbit splitting of 2D transition-metal dichalcogenides.

Public entry points:
    tmdflow.compute.compute_material  -- run the spin-orbit pipeline for one MX2 and analyse it
    tmdflow.analysis.splitting.analyze_bands -- Delta_VB(K), Delta_CB(K), dE(Gamma-K), gap from bands
See docs/architecture.md for the module map.
"""

__version__ = "0.1.0"
