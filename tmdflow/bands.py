"""Code-independent band data: what every parser produces and the analysis consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .errors import AnalysisError


@dataclass(frozen=True)
class BandData:
    """Eigenvalues on a list of k-points.

    kpoints_crystal: (nk, 3) in units of the reciprocal basis b1, b2, b3
    eigenvalues:     (nk, nbnd) in eV, ascending per k-point
    n_electrons:     valence electrons in the cell
    spinor:          True for noncollinear/spin-orbit runs (one electron per band),
                     False for spin-degenerate runs (two electrons per band)
    reciprocal_cell: (3, 3) rows b_i in 1/Angstrom (2*pi included)
    sigma_z:         optional (nk, nbnd) <sigma_z> expectation in units of hbar/2 (-1..1)
    sigma_inplane:   optional (nk, nbnd) |<sigma_par>| = sqrt(<sigma_x>^2 + <sigma_y>^2), same units
    """

    kpoints_crystal: np.ndarray
    eigenvalues: np.ndarray
    n_electrons: float
    spinor: bool
    reciprocal_cell: np.ndarray
    sigma_z: np.ndarray | None = None
    labels: tuple[str, ...] = field(default=())
    sigma_inplane: np.ndarray | None = None

    def __post_init__(self) -> None:
        k = np.asarray(self.kpoints_crystal, float)
        e = np.asarray(self.eigenvalues, float)
        if k.ndim != 2 or k.shape[1] != 3 or e.ndim != 2 or e.shape[0] != k.shape[0]:
            raise AnalysisError(
                f"inconsistent band data: k {k.shape}, eigenvalues {e.shape}",
                "this is a parser bug; report it with the output files",
            )
        for name in ("sigma_z", "sigma_inplane"):
            if getattr(self, name) is not None and np.shape(getattr(self, name)) != e.shape:
                raise AnalysisError(f"{name} shape differs from eigenvalues", "parser bug; report it")

    @property
    def n_occupied(self) -> int:
        """Number of fully occupied bands of an insulator (by electron count, not band index)."""
        per_band = 1.0 if self.spinor else 2.0
        n = self.n_electrons / per_band
        if abs(n - round(n)) > 1e-6:
            raise AnalysisError(
                f"{self.n_electrons} electrons do not fill whole {'spinor' if self.spinor else 'spin-degenerate'} bands",
                "Delta and gaps are defined here for insulating, charge-neutral cells only",
            )
        return int(round(n))

    @property
    def kpoints_cartesian(self) -> np.ndarray:
        """(nk, 3) in 1/Angstrom."""
        return np.asarray(self.kpoints_crystal) @ np.asarray(self.reciprocal_cell)

    def with_sigma_z(self, sigma_z: np.ndarray, sigma_inplane: np.ndarray | None = None) -> "BandData":
        return replace(self, sigma_z=np.asarray(sigma_z, float),
                       sigma_inplane=None if sigma_inplane is None else np.asarray(sigma_inplane, float))

    def take(self, mask) -> "BandData":
        """The k-points selected by a boolean mask or index array, with their labels and spins."""
        idx = np.arange(len(self.kpoints_crystal))[mask]
        pick = (lambda a: None if a is None else np.asarray(a)[idx])
        return replace(self, kpoints_crystal=np.asarray(self.kpoints_crystal)[idx],
                       eigenvalues=np.asarray(self.eigenvalues)[idx], sigma_z=pick(self.sigma_z),
                       sigma_inplane=pick(self.sigma_inplane),
                       labels=tuple(self.labels[i] for i in idx if i < len(self.labels)) if self.labels else ())

    @staticmethod
    def merge(*parts: "BandData") -> "BandData":
        """Concatenate k lists of runs on the same cell with the same electron count."""
        first = parts[0]
        nb = min(p.eigenvalues.shape[1] for p in parts)
        for p in parts[1:]:
            if p.spinor != first.spinor or abs(p.n_electrons - first.n_electrons) > 1e-6:
                raise AnalysisError("cannot merge band data of different runs", "merge SOC with SOC only")
        has_sz = all(p.sigma_z is not None for p in parts)
        has_sp = all(p.sigma_inplane is not None for p in parts)
        return BandData(
            kpoints_crystal=np.vstack([p.kpoints_crystal for p in parts]),
            eigenvalues=np.vstack([p.eigenvalues[:, :nb] for p in parts]),
            n_electrons=first.n_electrons,
            spinor=first.spinor,
            reciprocal_cell=first.reciprocal_cell,
            sigma_z=np.vstack([p.sigma_z[:, :nb] for p in parts]) if has_sz else None,
            labels=tuple(l for p in parts for l in (p.labels or ("",) * len(p.kpoints_crystal))),
            sigma_inplane=np.vstack([p.sigma_inplane[:, :nb] for p in parts]) if has_sp else None,
        )
