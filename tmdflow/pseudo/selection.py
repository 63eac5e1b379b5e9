"""Which pseudopotential files a material's run uses: the preset's family with its per-element
replacements, or the user's directory (Quantum ESPRESSO's adapter asks; tmdflow.steps re-exports it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import InputError
from .library import PseudoSet, ensure_pseudopotentials_by_element, sha256_of, user_pseudopotentials

if TYPE_CHECKING:  # pragma: no cover
    from ..materials import Material
    from ..presets import Preset
    from ..settings import Settings


def select_pseudopotentials(material: "Material", preset: "Preset", settings: "Settings",
                            rels: tuple[int, ...] = (1, 2),
                            progress: Callable[[str], None] | None = None) -> PseudoSet:
    """The preset's family, with its per-element replacements (``element_pseudo_families``), or
    the user's directory, for ``material``.

    The second-variational mode needs norm-conserving files: pw.x 6.7 stops in read_scf
    ("Reading PAW becsum") when a spin-orbit bands run reads a collinear PAW density.  Refused
    here, before anything runs.
    """
    if settings.user_pseudo_dir:
        pseudos = user_pseudopotentials(settings.user_pseudo_dir, material.elements, spin_orbit=True)
    else:
        pseudos = ensure_pseudopotentials_by_element(material.elements, preset.pseudo_family,
                                                     preset.element_pseudo_families, settings.pseudo_dir, rels=rels,
                                                     ld1_command=settings.ld1_command, progress=progress)
    if preset.spin_orbit_mode == "second_variational" and not pseudos.is_norm_conserving:
        raise InputError(
            f"spin_orbit_mode 'second_variational' needs norm-conserving pseudopotentials; "
            f"'{pseudos.family}' is not (pw.x 6.7 stops in read_scf, 'Reading PAW becsum', when a "
            "spin-orbit bands run reads a collinear PAW density)",
            "set pseudo_family: pslibrary-nc (and ecutwfc >= 70 Ry), or use spin_orbit_mode: scf",
        )
    return pseudos


def pseudo_sha256(pseudos: PseudoSet, element: str, path: Path) -> str:
    """SHA-256 of the file a step used: from the manifest when it is the managed file, else computed."""
    for table in (pseudos.full, pseudos.scalar):
        if element in table and table[element].path == path:
            return table[element].sha256
    return sha256_of(path)
