"""A Wannier tight-binding model of the spin-orbit bands: H(k) and sigma_z(k) at any k from the
real-space matrices Wannier90 writes, eigenvalues and <sigma_z> by diagonalising H(k).

Fig. 3 needs the bands around the gap everywhere in the zone.  Interpolating eigenvalues one band
at a time (:mod:`tmdflow.analysis.bzinterp`) fails where bands cross or anticross (near M in the
valence, near Gamma-Q in the conduction band), because an eigenvalue has a kink there; the
Hamiltonian in a basis of localised Wannier functions (metal d + chalcogen p spinors) has none, so
its Fourier series converges quickly and every crossing comes out of the diagonalisation.  The
model is validated, never assumed: against every point the soc_map step computed directly
(docs/performance.md, "Fig. 3 from Wannier functions").

Conventions (Wannier90 3.1): O(k)_mn = sum_R sum_T exp(2 pi i k.(R + T)) O_mn(R) / (deg(R) n_T),
T the supercell shifts of ``<seed>_wsvec.dat`` (use_ws_distance), k in crystal coordinates.  The
spin operator in the Wannier gauge: S_W(q) = V(q)^dagger S(q) V(q) on the nscf grid, V = U_dis U,
S(q) = pw2wannier90's <u_mq|sigma_z|u_nq>; S_W(R) = (1/N_q) sum_q exp(-2 pi i q.R) S_W(q) on H's R.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bands import BandData
from ..errors import AnalysisError


@dataclass(frozen=True)
class FourierOperator:
    """O(k) = sum_v exp(2 pi i k.v) A_v over in-plane lattice vectors v (lattice coordinates)."""

    vectors: np.ndarray  # (nv, 2) int
    amplitudes: np.ndarray  # (nv, nw, nw) complex

    def at(self, kpoints_crystal: np.ndarray) -> np.ndarray:
        k = np.asarray(kpoints_crystal, float)[:, :2]
        phases = np.exp(2j * np.pi * (k @ self.vectors.T.astype(float)))
        return np.einsum("kv,vmn->kmn", phases, self.amplitudes, optimize=True)


def fold_shifts(vectors: np.ndarray, degeneracy: np.ndarray, matrices: np.ndarray,
                shifts: dict | None) -> FourierOperator:
    """One Fourier series from Wannier90's R list: each element O_mn(R) / deg(R) placed at R + T
    for each of its Wigner-Seitz shifts T (shared equally; no shifts: at R)."""
    nr, nw, _ = matrices.shape
    if np.any(np.asarray(vectors)[:, 2] != 0) and shifts is None:
        raise AnalysisError("the model has lattice vectors along z", "a monolayer model needs an n x n x 1 grid")
    table: dict[tuple[int, int], np.ndarray] = {}
    zero = np.zeros((1, 3), int)
    for i, r in enumerate(np.asarray(vectors, int)):
        for m in range(nw):
            for n in range(nw):
                value = matrices[i, m, n] / degeneracy[i]
                if value == 0:
                    continue
                ts = zero if shifts is None else shifts.get((int(r[0]), int(r[1]), int(r[2]), m, n), zero)
                for t in ts:
                    key = (int(r[0] + t[0]), int(r[1] + t[1]))
                    if key not in table:
                        table[key] = np.zeros((nw, nw), complex)
                    table[key][m, n] += value / len(ts)
    keys = sorted(table)
    return FourierOperator(np.array(keys, int), np.array([table[k] for k in keys]))


def spin_in_wannier_gauge(sigma_bloch: np.ndarray, u: np.ndarray, u_dis: np.ndarray | None) -> np.ndarray:
    """S_W(q) = V^dagger S(q) V with V = U_dis U (num_bands x num_wann) at each grid point."""
    v = u if u_dis is None else np.einsum("qbi,qij->qbj", u_dis, u)
    if v.shape[1] != sigma_bloch.shape[1]:
        raise AnalysisError(f"the spin matrices have {sigma_bloch.shape[1]} bands, the gauge {v.shape[1]}",
                            "use the .spn and u matrices of the same pw2wannier90 / wannier90 run")
    return np.einsum("qbi,qbc,qcj->qij", v.conj(), sigma_bloch, v, optimize=True)


def to_real_space(grid_kpoints: np.ndarray, values: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """O(R) = (1/N_q) sum_q exp(-2 pi i q.R) O(q) for the given R (lattice coordinates)."""
    phases = np.exp(-2j * np.pi * (np.asarray(grid_kpoints)[:, :2] @ np.asarray(vectors)[:, :2].T.astype(float)))
    return np.einsum("qr,qmn->rmn", phases, values, optimize=True) / len(grid_kpoints)


@dataclass(frozen=True)
class WannierModel:
    """The spin-orbit bands of the Wannier manifold at any k: eigenvalues (eV, pw.x's zero) and
    <sigma_z>; ``first_band``: the pw.x band index (0-based) of the manifold's lowest band where
    it is isolated from below (bands excluded from the Wannierisation)."""

    hamiltonian: FourierOperator
    sigma_z: FourierOperator
    first_band: int
    grid: int  # the n of the n x n x 1 nscf grid it was built from

    def save(self, path) -> None:
        """Write the model (numpy's npz: the two Fourier series and the band offset)."""
        np.savez_compressed(path, h_vectors=self.hamiltonian.vectors, h_amplitudes=self.hamiltonian.amplitudes,
                            s_vectors=self.sigma_z.vectors, s_amplitudes=self.sigma_z.amplitudes,
                            first_band=self.first_band, grid=self.grid)

    @classmethod
    def load(cls, path) -> "WannierModel":
        try:
            with np.load(path) as f:
                return cls(FourierOperator(f["h_vectors"], f["h_amplitudes"]),
                           FourierOperator(f["s_vectors"], f["s_amplitudes"]), int(f["first_band"]), int(f["grid"]))
        except (OSError, KeyError, ValueError) as exc:
            raise AnalysisError(f"{path} is not a Wannier model tmdflow wrote ({exc})",
                                "run the wannier_map step again") from None

    @property
    def n_wann(self) -> int:
        return self.hamiltonian.amplitudes.shape[1]

    def eigen(self, kpoints_crystal: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """(energies (nk, nw) ascending, <sigma_z> (nk, nw)) at the k-points (crystal)."""
        k = np.asarray(kpoints_crystal, float)
        energies, spins = [], []
        for start in range(0, len(k), chunk):
            part = k[start:start + chunk]
            h = self.hamiltonian.at(part)
            e, vec = np.linalg.eigh(0.5 * (h + np.conj(np.swapaxes(h, 1, 2))))
            s = self.sigma_z.at(part)
            energies.append(e)
            spins.append(np.einsum("kmi,kmn,kni->ki", vec.conj(), s, vec, optimize=True).real)
        return np.vstack(energies), np.vstack(spins)

    def bands(self, kpoints_crystal: np.ndarray, reciprocal_cell: np.ndarray, n_electrons: int,
              keep: tuple[int, int] | None = None) -> BandData:
        """The model's bands at the k-points as a spin-orbit :class:`BandData` with <sigma_z>;
        ``keep`` = (first, last) pw.x band indices (0-based, inclusive) to keep, the occupation
        counted so that the kept bands' occupied ones stay occupied."""
        e, s = self.eigen(kpoints_crystal)
        lo, hi = (self.first_band, self.first_band + self.n_wann - 1) if keep is None else keep
        if lo < self.first_band or hi >= self.first_band + self.n_wann:
            raise AnalysisError(f"bands {lo}-{hi} are not all in the Wannier manifold "
                                f"({self.first_band}-{self.first_band + self.n_wann - 1})",
                                "keep bands inside the manifold")
        cols = slice(lo - self.first_band, hi - self.first_band + 1)
        k = np.zeros((len(kpoints_crystal), 3))
        k[:, :2] = np.asarray(kpoints_crystal)[:, :2]
        return BandData(k, e[:, cols], n_electrons - lo, True, np.asarray(reciprocal_cell)).with_sigma_z(s[:, cols])


def wannier_model(hr, shifts, sigma_bloch: np.ndarray, u: np.ndarray, u_dis: np.ndarray | None,
                  grid_kpoints: np.ndarray, first_band: int, grid: int) -> WannierModel:
    """The model from parsed Wannier90 outputs (:mod:`tmdflow.calculators.espresso.parsers.wannier90`):
    ``hr`` (RealSpaceMatrices), the wsvec shifts, the .spn sigma_z and the u matrices on the grid."""
    hamiltonian = fold_shifts(hr.vectors, hr.degeneracy, hr.matrices, shifts)
    spin_r = to_real_space(grid_kpoints, spin_in_wannier_gauge(sigma_bloch, u, u_dis), hr.vectors)
    return WannierModel(hamiltonian, fold_shifts(hr.vectors, hr.degeneracy, spin_r, shifts), first_band, grid)
