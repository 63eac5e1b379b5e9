"""Physics checks every spin-orbit result must pass (asserted in tests at small settings, stored
with the figures):

monolayer (D3h, no inversion)
  - Delta = 0 along Gamma-M (theta = n pi/3): the vertical mirror maps each Gamma-M point to
    itself and reverses <sigma_z>, so the pair is degenerate;
  - full out-of-plane spin of the split valence and conduction pairs at K: <sigma_x> = <sigma_y> = 0
    (the horizontal mirror sigma_h; checked when bands.x computed them), |<sigma_z>| close to 1
    and opposite within each pair;
  - Delta(K') = -Delta(K): equal magnitude, spins reversed (time reversal).
bulk 2H (inversion + time reversal)
  - every level is a Kramers pair: no spin splitting anywhere on the path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..bands import BandData
from .splitting import analyze_bands

GAMMA_M_TOLERANCE_MEV = 1.0  # symmetry makes it 0; pw.x diagonalisation noise is ~1e-3 meV
# sigma_h (z -> -z) maps every k of the plane to itself and acts on spin as i sigma_z: each state at K
# is (sigma_h-even orbital) x spin s + (sigma_h-odd orbital) x spin -s, so <sigma_x> = <sigma_y> = 0
# exactly and |<sigma_z>| = 1 - 2 w, w the weight of the odd orbitals (M d_xz, d_yz) that spin-orbit
# coupling mixes in.  Measured (docs/physics.md): in-plane 0.000; |<sigma_z>| 0.93-1.00 except the
# lowest conduction state of the W compounds, 0.874 (WSe2) - 0.92 (WS2): w = 4-6 %.
SIGMA_INPLANE_MAXIMUM = 0.01  # bands.x prints s = sigma/2 to 3 decimals
SIGMA_Z_MINIMUM = 0.8  # w <= 10 %: a spin-split state; a spin-mixed one fails this or the pair sign
KPRIME_TOLERANCE_MEV = 0.5


def path_segment(labels: tuple[str, ...], start: str, end: str) -> list[int]:
    """Indices of the path points from corner ``start`` to the next corner ``end`` (inclusive).

    The path follows the five special points G, K, K', M, Q of the splitting list."""
    lab = list(labels)
    for i in range(5, len(lab)):
        if lab[i] == start:
            for j in range(i + 1, len(lab)):
                if lab[j]:
                    if lab[j] == end:
                        return list(range(i, j + 1))
                    break
    return []


def top_pair_splitting_mev(bands: BandData, indices: list[int]) -> np.ndarray:
    nocc = bands.n_occupied
    e = np.asarray(bands.eigenvalues)[indices]
    return (e[:, nocc - 1] - e[:, nocc - 2]) * 1000.0


@dataclass(frozen=True)
class PhysicsChecks:
    dimensionality: str
    max_delta_gamma_m_mev: float | None = None  # monolayer: |Delta_UVB| on Gamma-M (path)
    min_sigma_z_at_k: float | None = None  # monolayer: min |<sigma_z>| of the 4 split states at K
    delta_k_mev: float | None = None
    delta_kprime_mev: float | None = None
    spin_reversed_at_kprime: bool | None = None
    max_pair_splitting_mev: float | None = None  # bulk: largest splitting of a Kramers pair on the path
    map_max_delta_gamma_m_mev: float | None = None  # monolayer map: |Delta_UVB| on the Gamma-M edge
    failures: list[str] = field(default_factory=list)
    max_sigma_inplane_at_k: float | None = None  # monolayer: max |<sigma_par>| of the 4 split states at K

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def check_monolayer(path_bands: BandData, map_bands: BandData | None = None) -> PhysicsChecks:
    s = analyze_bands(path_bands)
    failures = []
    gm = path_segment(path_bands.labels, "G", "M")
    max_gm = float(np.abs(top_pair_splitting_mev(path_bands, gm)).max()) if gm else None
    if max_gm is None:
        failures.append("no Gamma-M segment in the bands run (path_points = 0)")
    elif max_gm > GAMMA_M_TOLERANCE_MEV:
        failures.append(f"Delta on Gamma-M is {max_gm:.3f} meV (> {GAMMA_M_TOLERANCE_MEV})")
    sz = [abs(x) for x in (s.vb_k_sigma_z or ()) + (s.cb_k_sigma_z or ())]
    min_sz = min(sz) if sz else None
    if min_sz is None or min_sz < SIGMA_Z_MINIMUM:
        failures.append(f"|<sigma_z>| at K is {min_sz} (< {SIGMA_Z_MINIMUM})")
    for name, pair in (("valence", s.vb_k_sigma_z), ("conduction", s.cb_k_sigma_z)):
        if pair is not None and not np.sign(pair[0]) == -np.sign(pair[1]) != 0:
            failures.append(f"the split {name} pair at K does not carry opposite spins (<sigma_z> {pair})")
    if s.k_sigma_inplane_max is not None and s.k_sigma_inplane_max > SIGMA_INPLANE_MAXIMUM:
        failures.append(f"in-plane spin |<sigma_par>| {s.k_sigma_inplane_max:.3f} at K (> {SIGMA_INPLANE_MAXIMUM}): "
                        "the spin is not out of plane (broken sigma_h symmetry?)")
    if not s.spin_reversed_at_kprime:
        failures.append("spins at K' are not reversed with respect to K")
    if s.delta_vb_kprime_mev is None or abs(s.delta_vb_kprime_mev - s.delta_vb_k_mev) > KPRIME_TOLERANCE_MEV:
        failures.append(f"|Delta(K')| {s.delta_vb_kprime_mev} differs from |Delta(K)| {s.delta_vb_k_mev:.2f} meV")
    map_gm = None
    if map_bands is not None:
        from .bzmap import on_gamma_m_edge

        edge = list(np.nonzero(on_gamma_m_edge(map_bands.kpoints_crystal))[0])
        map_gm = float(np.abs(top_pair_splitting_mev(map_bands, edge)).max())
        if map_gm > GAMMA_M_TOLERANCE_MEV:
            failures.append(f"map: Delta on Gamma-M is {map_gm:.3f} meV (> {GAMMA_M_TOLERANCE_MEV})")
    return PhysicsChecks("monolayer", max_gm, min_sz, s.delta_vb_k_mev, s.delta_vb_kprime_mev,
                         s.spin_reversed_at_kprime, None, map_gm, failures, s.k_sigma_inplane_max)


def check_bulk(path_bands: BandData) -> PhysicsChecks:
    """Kramers degeneracy: E_(2i+1) = E_(2i+2) at every k of the path (and the special points)."""
    e = np.asarray(path_bands.eigenvalues)
    nocc = path_bands.n_occupied
    pairs = e[:, 0:nocc:2], e[:, 1:nocc:2]
    n = min(pairs[0].shape[1], pairs[1].shape[1])
    worst = float(np.abs(pairs[1][:, :n] - pairs[0][:, :n]).max() * 1000.0)
    failures = [] if worst <= GAMMA_M_TOLERANCE_MEV else [f"a Kramers pair is split by {worst:.3f} meV"]
    return PhysicsChecks("bulk", max_pair_splitting_mev=worst, failures=failures)
