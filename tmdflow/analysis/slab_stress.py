"""Is the stress of a monolayer relaxation free of basis-set (Pulay) error?  Plain functions.

A layer in vacuum whose atoms are relaxed feels no stress along z: nothing acts across the
vacuum, and with zero forces an affine z strain changes nothing to first order.  So the σ_zz
that pw.x reports at the end of a vc-relax (``cell_dofree='2Dxy'``) is zero in a complete basis,
and what is left is the Pulay stress of the finite plane-wave basis — which is isotropic, so the
same error sits in the in-plane σ_xx that the relaxation drove to zero.  Measured on WSe2 with a
harder Se file (docs/physics.md, "A second PAW family"): σ_zz −2.90 / −1.42 / −0.43 kbar at
60 / 80 / 100 Ry while σ_xx − σ_zz stayed at +3.3 kbar: the relaxation at 60 Ry had stopped at
a lattice constant 0.02 Å too small.

The relaxation stops at finite forces, and residual forces along z add their virial to σ_zz
(pw.x's stress is the strain derivative at fixed fractional coordinates): with the D3h breathing
forces at the 0.5 mRy/bohr criterion that is up to ≈ 0.5 kbar in a 10 Å cell.  It is removed
(first order) before the check: σ_zz^basis = σ_zz − (1/V) Σ_i F_iz (z_i − z̄).  In-plane strain does
not move atoms along z, so σ_xx has no such term.

Stresses in kbar of the relaxation cell (diluted by its height, like pw.x's press_conv_thr).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GPA_TO_KBAR = 10.0
EV_PER_A3_TO_KBAR = 1602.176634  # 1 eV/Å^3 = 160.2176634 GPa


@dataclass(frozen=True)
class SlabStress:
    """The end of one monolayer relaxation: its in-plane and out-of-plane stress."""

    sigma_xx_kbar: float
    sigma_zz_kbar: float  # as pw.x reports it
    residual_force_kbar: float  # the virial of the residual forces along z, part of sigma_zz_kbar
    threshold_kbar: float | None  # |sigma_zz_basis_kbar| allowed; None: not checked

    @property
    def sigma_zz_basis_kbar(self) -> float:
        """σ_zz without the residual forces' virial: the basis-set (Pulay) stress."""
        return self.sigma_zz_kbar - self.residual_force_kbar

    @property
    def in_plane_without_pulay_kbar(self) -> float:
        """σ_xx − σ_zz^basis: the in-plane stress with the isotropic basis-set error removed."""
        return self.sigma_xx_kbar - self.sigma_zz_basis_kbar

    @property
    def passed(self) -> bool:
        return self.threshold_kbar is None or abs(self.sigma_zz_basis_kbar) <= self.threshold_kbar

    def describe(self, ecutwfc: float, ecutrho: float) -> str:
        return (f"the slab's sigma_zz is {self.sigma_zz_basis_kbar:+.2f} kbar at {ecutwfc:g}/{ecutrho:g} Ry "
                f"(pw.x {self.sigma_zz_kbar:+.2f}, less {self.residual_force_kbar:+.2f} from the residual forces; it "
                f"must vanish, allowed |sigma_zz| <= {self.threshold_kbar:g} kbar): a basis-set (Pulay) stress of that "
                f"size sits in the in-plane stress the relaxation drove to zero (sigma_xx {self.sigma_xx_kbar:+.2f}, "
                f"without it {self.in_plane_without_pulay_kbar:+.2f} kbar)")


def slab_stress(stress_gpa: np.ndarray | None, forces_ev_per_angstrom: np.ndarray | None,
                positions_angstrom: np.ndarray, cell_angstrom: np.ndarray, threshold_kbar: float | None) -> SlabStress:
    """The check from pw.x's stress tensor (GPa) and forces (eV/Å) of the final structure, as
    parsed from the XML of the relaxation."""
    if stress_gpa is None or forces_ev_per_angstrom is None:
        raise ValueError("the relaxation wrote no stress tensor or forces (tstress and tprnfor are set for "
                         "vc-relax; read its output)")
    s = np.asarray(stress_gpa, dtype=float) * GPA_TO_KBAR
    z = np.asarray(positions_angstrom, dtype=float)[:, 2]
    fz = np.asarray(forces_ev_per_angstrom, dtype=float)[:, 2]
    volume = abs(float(np.linalg.det(np.asarray(cell_angstrom, dtype=float))))
    virial = float(np.sum(fz * (z - z.mean()))) / volume * EV_PER_A3_TO_KBAR
    return SlabStress(float(0.5 * (s[0, 0] + s[1, 1])), float(s[2, 2]), virial, threshold_kbar)


def raised_cutoffs(ecutwfc: float, ecutrho: float, step_ry: float) -> tuple[float, float]:
    """The next rung of the cut-off ladder: ecutwfc + step, ecutrho with the same dual (ratio)."""
    new = ecutwfc + step_ry
    return new, round(ecutrho * new / ecutwfc, 6)
