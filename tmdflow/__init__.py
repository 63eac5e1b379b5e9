"""tmdflow: first-principles spin-orbit splitting of 2D transition-metal dichalcogenides.

The Python API (tmdflow.api) is importable from here, loaded on first use so that
``import tmdflow`` stays fast:

    import tmdflow
    tmdflow.submit("workflows/quick.yaml"); tmdflow.launch()
    docs = tmdflow.query(formula="WSe2"); docs[0].to_structure(); docs[0].to_atoms()
    bs = tmdflow.bandstructure(docs[0]); df = tmdflow.dataframe(); print(tmdflow.table1())

Also: tmdflow.compute.compute_material (one MX2 without the workflow engine),
tmdflow.analysis.splitting.analyze_bands (Delta_VB(K), Delta_CB(K), dE(Gamma-K), gap from bands).
See docs/architecture.md for the module map and docs/user-guide.md, "Using the results in Python".
"""

from __future__ import annotations

__version__ = "0.1.0"

#: the public functions of tmdflow.api, importable as tmdflow.<name>
_API = (
    "submit", "launch", "prioritize", "rerun", "status", "query", "error_bars", "table1", "backup", "restore",
    "info", "structure", "write_structure", "bandstructure", "band_projections", "dataframe",
)
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'tmdflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
