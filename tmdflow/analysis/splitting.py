"""Spin-orbit splittings at K, the Gamma-K valence offset and the band gap.

Conventions (docs/physics.md, all energies in meV except the gap in eV):
  Delta_VB(K)  = E(top valence, K) - E(second valence, K)                       (>= 0)
  Delta_CB(K)  = E(c, spin opposite to the top valence state at K)
               - E(c, spin of the top valence state at K)
               over the two lowest conduction states at K; spin = sign of <sigma_z>.
               > 0: lowest conduction state has the spin of the top valence state (MoX2),
               < 0: opposite spin (WX2).  Unsigned (sign unknown) when <sigma_z> is absent.
  dE(Gamma-K)  = E_VB(K) - E_VB(Gamma), top valence state at each point (> 0: VBM at K)
  gap          = min conduction - max valence over all k-points supplied.
States are identified by the electron count (number of occupied bands), never a fixed index.
Levels degenerate within DEGENERACY_EV count as one (bulk 2H: inversion + time reversal make
every level a Kramers pair, so "second valence state" means the next distinct level and the
spin sign of Delta_CB is undefined: it is reported unsigned with spin_degenerate = True).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..bands import BandData
from ..errors import AnalysisError
from ..kpoints import GAMMA, K_POINT

K_TOLERANCE = 2e-3  # crystal units; pw.x text output prints k with 4 decimals
DEGENERACY_EV = 1e-3


@dataclass(frozen=True)
class SplittingResult:
    delta_vb_k_mev: float
    delta_cb_k_mev: float
    delta_cb_sign_known: bool
    delta_e_gamma_k_mev: float
    gap_ev: float
    direct_gap_at_k: bool
    vbm_location: str
    cbm_location: str
    vb_k_sigma_z: tuple[float, float] | None  # top and second valence state at K
    cb_k_sigma_z: tuple[float, float] | None  # lowest and second conduction state at K
    delta_vb_kprime_mev: float | None  # with K' in the list: equal magnitude, spins reversed
    spin_reversed_at_kprime: bool | None
    n_kpoints: int
    spin_degenerate: bool = False  # levels at K are Kramers pairs (bulk with inversion)
    k_sigma_inplane_max: float | None = None  # max |<sigma_par>| of the four split states at K (bands.x lsigma(1, 2))

    def to_dict(self) -> dict:
        return asdict(self)


def _indices_equivalent(bands: BandData, target: np.ndarray) -> list[int]:
    """k-points equal to ``target`` modulo a reciprocal lattice vector (in-plane components)."""
    diff = np.asarray(bands.kpoints_crystal)[:, :2] - target[:2]
    close = np.all(np.abs(diff - np.round(diff)) < K_TOLERANCE, axis=1)
    return list(np.nonzero(close)[0])


def _location(bands: BandData, ik: int) -> str:
    """The k-point's name in tmdflow's one vocabulary (tmdflow.analysis.vocabulary)."""
    from .vocabulary import kpoint_location

    label = bands.labels[ik] if bands.labels and ik < len(bands.labels) else None
    return kpoint_location(bands.kpoints_crystal[ik], label or None, tol=K_TOLERANCE)


def analyze_bands(bands: BandData) -> SplittingResult:
    """Delta_VB(K), Delta_CB(K), dE(Gamma-K) and the gap of a spin-orbit band set."""
    if not bands.spinor:
        raise AnalysisError(
            "these bands come from a run without spin-orbit coupling (spin-degenerate)",
            "analyse the spin-orbit run (noncolin=.true., lspinorb=.true.)",
        )
    gammas = _indices_equivalent(bands, GAMMA)
    ks = _indices_equivalent(bands, K_POINT)
    kps = _indices_equivalent(bands, -K_POINT)
    if not gammas or not (ks or kps):
        raise AnalysisError(
            f"the k list lacks {'Gamma' if not gammas else 'K = (1/3, 1/3, 0)'}",
            "run pw.x (calculation='bands') on an explicit list containing Gamma and K",
        )
    if not ks:  # only K' present: by time reversal Delta is the same, spins reversed
        ks = kps
    nocc = bands.n_occupied
    e = np.asarray(bands.eigenvalues)
    if e.shape[1] < nocc + 2:
        raise AnalysisError(
            f"only {e.shape[1]} bands for {nocc} occupied: no conduction states",
            "raise nbnd (extra_bands) so that at least two conduction bands are computed",
        )
    ik, ig = ks[0], gammas[0]
    level = e[ik]
    deg_v = int(np.sum(np.abs(level[:nocc] - level[nocc - 1]) < DEGENERACY_EV))
    deg_c = int(np.sum(np.abs(level[nocc:] - level[nocc]) < DEGENERACY_EV))
    if nocc - 1 - deg_v < 0 or nocc + deg_c >= e.shape[1]:
        raise AnalysisError("not enough bands around the gap at K", "raise extra_bands")
    i_v2, i_c2 = nocc - 1 - deg_v, nocc + deg_c
    v1, v2 = level[nocc - 1], level[i_v2]
    c1, c2 = level[nocc], level[i_c2]
    delta_vb = (v1 - v2) * 1000
    sz = bands.sigma_z
    sign_known = False
    delta_cb = (c2 - c1) * 1000
    vb_sz = cb_sz = inplane = None
    degenerate = deg_v > 1 or deg_c > 1
    if bands.sigma_inplane is not None and not degenerate:
        inplane = float(np.max(np.asarray(bands.sigma_inplane)[ik, [nocc - 1, i_v2, nocc, i_c2]]))
    if sz is not None and not degenerate:
        vb_sz = (float(sz[ik, nocc - 1]), float(sz[ik, i_v2]))
        cb_sz = (float(sz[ik, nocc]), float(sz[ik, i_c2]))
        s_top = np.sign(vb_sz[0])
        if s_top != 0 and np.sign(cb_sz[0]) != 0 and np.sign(cb_sz[0]) != np.sign(cb_sz[1]):
            sign_known = True
            same = np.sign(cb_sz[0]) == s_top  # lowest conduction state has the top-VB spin
            delta_cb = (c2 - c1) * 1000 if same else (c1 - c2) * 1000
    vbm_k = int(np.argmax(e[:, nocc - 1]))
    cbm_k = int(np.argmin(e[:, nocc]))
    gap = float(e[cbm_k, nocc] - e[vbm_k, nocc - 1])
    # the extremum is "at K" when it sits on a K or K' point, or K is degenerate with it (1 meV)
    valley = set(ks) | set(kps)
    vb_at_k = vbm_k in valley or e[ik, nocc - 1] >= e[vbm_k, nocc - 1] - 1e-3
    cb_at_k = cbm_k in valley or e[ik, nocc] <= e[cbm_k, nocc] + 1e-3
    dkp = rev = None
    if kps and ks[0] != kps[0]:
        ikp = kps[0]
        dkp = float((e[ikp, nocc - 1] - e[ikp, nocc - 1 - deg_v]) * 1000)
        if sz is not None and not degenerate:
            rev = bool(np.sign(sz[ikp, nocc - 1]) == -np.sign(sz[ik, nocc - 1]) != 0)
    return SplittingResult(
        delta_vb_k_mev=float(delta_vb),
        delta_cb_k_mev=float(delta_cb),
        delta_cb_sign_known=sign_known,
        delta_e_gamma_k_mev=float((e[ik, nocc - 1] - e[ig, nocc - 1]) * 1000),
        gap_ev=gap,
        direct_gap_at_k=bool(vb_at_k and cb_at_k),
        vbm_location="K" if vb_at_k else _location(bands, vbm_k),
        cbm_location="K" if cb_at_k else _location(bands, cbm_k),
        vb_k_sigma_z=vb_sz,
        cb_k_sigma_z=cb_sz,
        delta_vb_kprime_mev=dkp,
        spin_reversed_at_kprime=rev,
        n_kpoints=len(bands.kpoints_crystal),
        spin_degenerate=bool(degenerate),
        k_sigma_inplane_max=inplane,
    )
