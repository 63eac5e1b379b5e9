"""bands.x spin texture: ``<filband>.1``, ``.2``, ``.3`` (<sigma_x>, <sigma_y>, <sigma_z>) beside
``<filband>`` (energies)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ....errors import OutputParseError

_NUM = re.compile(r"-?\d+\.\d+")


def _read_plot_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A bands.x '&plot nbnd=.., nks=.. /' file -> (k (nks, 3) cartesian 2pi/alat, values (nks, nbnd))."""
    if not path.is_file():
        raise OutputParseError(f"bands.x file {path} not found", "run bands.x with lsigma(1..3)=.true.")
    lines = path.read_text().splitlines()
    m = re.search(r"nbnd=\s*(\d+),\s*nks=\s*(\d+)", lines[0] if lines else "")
    if not m:
        raise OutputParseError(f"{path}: missing '&plot nbnd=, nks=' header", "not a bands.x file")
    nbnd, nks = int(m.group(1)), int(m.group(2))
    numbers = [float(x) for line in lines[1:] for x in _NUM.findall(line)]
    per_k = 3 + nbnd
    if len(numbers) != nks * per_k:
        raise OutputParseError(
            f"{path}: expected {nks} k-points x {per_k} numbers, found {len(numbers)}", "file truncated?"
        )
    data = np.array(numbers).reshape(nks, per_k)
    return data[:, :3], data[:, 3:]


def _spin_component(filband: Path, component: int, eigenvalues: np.ndarray | None, tol_ev: float) -> np.ndarray:
    """<sigma_i> (i = 1, 2, 3 for x, y, z) per (k, band), scaled to -1..1 (bands.x prints s_i = sigma_i / 2)."""
    k_e, energies = _read_plot_file(filband)
    k_s, s_i = _read_plot_file(filband.with_name(f"{filband.name}.{component}"))
    if energies.shape != s_i.shape or not np.allclose(k_e, k_s, atol=1e-5):
        raise OutputParseError(f"{filband} and its .{component} file disagree", "rerun bands.x")
    if eigenvalues is not None:
        eig = np.asarray(eigenvalues)[:, : energies.shape[1]]
        if eig.shape != energies.shape or np.max(np.abs(eig - energies)) > tol_ev:
            raise OutputParseError(
                f"bands.x energies in {filband} do not match pw.x's band by band",
                "bands.x may have re-ordered bands; run it with lsym=.false. and no_overlap=.true.",
            )
    return 2.0 * s_i


def parse_bandsx_sigma_z(filband: Path, eigenvalues: np.ndarray | None = None, tol_ev: float = 0.002) -> np.ndarray:
    """<sigma_z> per (k, band), scaled to -1..1 (bands.x prints s_z = sigma_z / 2).

    When ``eigenvalues`` (eV, from pw.x) are given, the energies bands.x wrote beside the spin
    values must agree band by band within ``tol_ev`` (bands.x prints 1 meV), so that each
    <sigma_z> is attached to the right state; otherwise OutputParseError.
    """
    return _spin_component(Path(filband), 3, eigenvalues, tol_ev)


def parse_bandsx_sigma_inplane(filband: Path, eigenvalues: np.ndarray | None = None,
                               tol_ev: float = 0.002) -> np.ndarray | None:
    """|<sigma_par>| = sqrt(<sigma_x>^2 + <sigma_y>^2) per (k, band) from bands.x lsigma(1), lsigma(2)
    (the ``.1`` and ``.2`` files); None when bands.x computed <sigma_z> only.  Same band-by-band
    energy check as parse_bandsx_sigma_z."""
    filband = Path(filband)
    files = [filband.with_name(f"{filband.name}.{i}") for i in (1, 2)]
    if not any(f.is_file() for f in files):
        return None
    s_x, s_y = (_spin_component(filband, i, eigenvalues, tol_ev) for i in (1, 2))
    return np.hypot(s_x, s_y)
