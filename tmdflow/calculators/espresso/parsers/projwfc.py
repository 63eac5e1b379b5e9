"""projwfc.x projections: the ``<filproj>.projwfc_up`` file (collinear / scalar-relativistic runs).

Layout (QE 6.7, measured): a header (title, FFT dimensions, cell, atoms), then a line
``natomwfc nkstot nbnd``, a line ``noncolin lspinorb`` (``F F``), then per atomic state one
line ``state atom element label n l m`` followed by nkstot*nbnd lines ``ik ibnd |<psi|phi>|^2``.
Real spherical harmonics in QE's order: l=1: m = 1 p_z, 2 p_x, 3 p_y; l=2: m = 1 d_z2, 2 d_xz,
3 d_yz, 4 d_x2-y2, 5 d_xy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ....errors import OutputParseError

D_ORBITALS = {1: "dz2", 2: "dxz", 3: "dyz", 4: "dx2-y2", 5: "dxy"}
P_ORBITALS = {1: "pz", 2: "px", 3: "py"}


@dataclass(frozen=True)
class AtomicState:
    index: int
    atom: int  # 1-based atom index
    element: str
    label: str  # e.g. '4D'
    l: int
    m: int

    @property
    def orbital(self) -> str:
        if self.l == 0:
            return "s"
        return (P_ORBITALS if self.l == 1 else D_ORBITALS).get(self.m, f"l{self.l}m{self.m}") if self.l in (1, 2) \
            else f"l{self.l}m{self.m}"


@dataclass(frozen=True)
class Projections:
    states: tuple[AtomicState, ...]
    weights: np.ndarray  # (n_states, nk, nbnd): |<phi_state|psi_nk>|^2

    def summed(self, select) -> np.ndarray:
        """(nk, nbnd) sum of the weights of the states for which ``select(state)`` is true."""
        idx = [i for i, s in enumerate(self.states) if select(s)]
        return self.weights[idx].sum(axis=0) if idx else np.zeros(self.weights.shape[1:])


def parse_projwfc_up(path: Path) -> Projections:
    path = Path(path)
    if not path.is_file():
        raise OutputParseError(f"{path} not found", "run projwfc.x with filproj set (collinear run)")
    lines = path.read_text().splitlines()
    start = next((i for i, l in enumerate(lines) if l.split() in (["F", "F"], ["T", "F"], ["T", "T"])), None)
    if start is None or start < 1:
        raise OutputParseError(f"{path}: no 'noncolin lspinorb' line", "not a projwfc.x filproj file")
    if lines[start].split() != ["F", "F"]:
        raise OutputParseError(f"{path}: noncollinear projections", "project the scalar-relativistic run")
    try:
        nstates, nk, nbnd = (int(x) for x in lines[start - 1].split()[:3])
    except ValueError:
        raise OutputParseError(f"{path}: bad 'natomwfc nkstot nbnd' line", "not a projwfc.x file") from None
    states, weights = [], np.zeros((nstates, nk, nbnd))
    i = start + 1
    for s in range(nstates):
        p = lines[i].split()
        if len(p) < 7:
            raise OutputParseError(f"{path}:{i + 1}: bad state line {lines[i]!r}", "file truncated?")
        states.append(AtomicState(int(p[0]), int(p[1]), p[2], p[3], int(p[5]), int(p[6])))
        block = lines[i + 1:i + 1 + nk * nbnd]
        if len(block) < nk * nbnd:
            raise OutputParseError(f"{path}: state {s + 1} has {len(block)} of {nk * nbnd} values", "file truncated?")
        vals = np.array([float(l.split()[2]) for l in block])
        weights[s] = vals.reshape(nk, nbnd)
        i += 1 + nk * nbnd
    return Projections(tuple(states), weights)


def paper_orbital_weights(proj: Projections, metal: str, chalcogen: str) -> dict[str, np.ndarray]:
    """The four characters of Zhu et al. Fig. 4: M d_z2, M d_xy + d_x2-y2, X p_z, X p_x + p_y
    (summed over the atoms of each element), each (nk, nbnd)."""
    return {
        "M_dz2": proj.summed(lambda s: s.element == metal and s.l == 2 and s.m == 1),
        "M_dxy_dx2y2": proj.summed(lambda s: s.element == metal and s.l == 2 and s.m in (4, 5)),
        "X_pz": proj.summed(lambda s: s.element == chalcogen and s.l == 1 and s.m == 1),
        "X_pxpy": proj.summed(lambda s: s.element == chalcogen and s.l == 1 and s.m in (2, 3)),
    }
