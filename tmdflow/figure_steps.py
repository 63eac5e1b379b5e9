"""The steps after the analysis that produce the paper's figures (Quantum ESPRESSO):

bands_sr  scalar-relativistic bands on the spin-orbit bands' k list (in sr/, from the SR SCF
          density) + projwfc.x orbital weights                        -> Fig. 2 dotted, Fig. 4
soc_map   spin-orbit bands + <sigma_z> on the irreducible wedge of an N x N grid (in soc/)
                                                                       -> Fig. 3 (monolayer)
figures   no calculation: physics checks + PNG/SVG/CSV files in <material>/figures/

Plain functions like :mod:`tmdflow.steps`; they return typed documents, the caller stores them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ase import Atoms

from .analysis.bzmap import unfold, wedge_points
from .analysis.checks import check_bulk, check_monolayer
from .bands import BandData
from .errors import InputError
from .kpoints import splitting_kpoints
from .materials import parse_formula
from .store.documents import BandStructureDoc, FiguresDoc, StructureDoc

if TYPE_CHECKING:  # pragma: no cover
    from .steps import StepOutcome, StepRequest

FIGURE_STEPS = ("bands_sr", "soc_map", "figures")
SIGMA_FILE = {"bands_soc": "spin_texture.dat", "soc_map": "soc_map_sigma.dat"}


def _labels(directory: Path, name: str = "bands_labels.txt") -> tuple[str, ...]:
    f = directory / name
    return tuple(f.read_text().split("\n")) if f.is_file() else ()




def run_figure_step(req: "StepRequest", calc, atoms: Atoms, root: Path, pseudos, say) -> "StepOutcome":
    from .calculators.espresso.adapter import valence_electrons
    from .calculators.espresso.parsers.projwfc import paper_orbital_weights
    from .steps import StepOutcome, _task

    if req.preset.spin_orbit_mode == "second_variational":
        raise InputError(f"the {req.step} step needs the self-consistent spin-orbit mode",
                         "use spin_orbit_mode: scf for the figure steps")
    structure = req.structure or StructureDoc.from_atoms(atoms)
    if req.step == "figures":
        return StepOutcome(structure, req.relaxed, figures=make_figures(req, calc, root))
    if req.step == "soc_map" and req.dimensionality == "bulk":
        # bulk 2H: inversion + time reversal make every level a Kramers pair: Delta(k) = 0
        return StepOutcome(structure, req.relaxed)
    material = req.formula
    elements = sorted(set(atoms.get_chemical_symbols()))
    spin_orbit = req.step == "soc_map"
    files = {el: pseudos.for_element(el, spin_orbit=spin_orbit).path for el in elements}
    calc.check_executables(spin_texture=spin_orbit, projections=not spin_orbit)
    directory = root / ("soc" if spin_orbit else "sr")
    if not (directory / f"{'scf_soc' if spin_orbit else 'scf_sr'}.xml").is_file():
        raise InputError(f"{req.step}: no SCF in {directory}",
                         f"run the {'scf_soc' if spin_orbit else 'scf_sr'} step first")
    n_val = int(round(valence_electrons(atoms, files)))
    if spin_orbit:
        kpts, labels = wedge_points(req.preset.map_points), []
        nbnd = n_val + 2 * req.preset.extra_bands
    else:
        kpts, labels = splitting_kpoints(atoms.cell[:], req.preset.path_points)
        nbnd = n_val // 2 + req.preset.extra_bands
    result = calc.bands(atoms, req.preset, directory, files, spin_orbit=spin_orbit, kpoints=kpts, nbnd=nbnd,
                        progress=say, step=req.step)
    weights = None
    if spin_orbit:
        calc.spin_texture(directory, result, progress=say, filband=SIGMA_FILE["soc_map"], in_plane=False)
        bands = calc.read_bands(directory, "soc_map", sigma_file=SIGMA_FILE["soc_map"])
    else:
        (directory / "bands_labels.txt").write_text("\n".join(labels) + "\n")
        proj = calc.orbital_projections(directory, progress=say)
        metal, chalcogen = parse_formula(material)
        weights = paper_orbital_weights(proj, metal, chalcogen)
        bands = calc.read_bands(directory, "bands_sr", tuple(labels))
    freed = calc.cleanup(directory)
    task = _task(req, result, atoms, files, pseudos, [])
    task.outputs["scratch_freed_bytes"] = freed
    kind = "soc_map" if spin_orbit else "sr_path"
    doc = BandStructureDoc.from_bands(f"{req.material_id}-{req.step}", kind, bands, weights,
                                      fermi_energy_ev=result.xml.fermi_energy_ev)
    return StepOutcome(structure, req.relaxed, task=task, bandstructure=doc)


def make_figures(req: "StepRequest", calc, root: Path) -> FiguresDoc:
    """Physics checks and the Fig. 2-4 analogues from the run directories."""
    from .calculators.espresso.parsers.projwfc import paper_orbital_weights, parse_projwfc_up
    from .figures import fig2_bands, fig3_map, fig4_gamma_k, gamma_k_profile

    soc_dir, sr_dir = root / "soc", root / "sr"
    soc = calc.read_spin_orbit_bands(soc_dir, _labels(soc_dir))
    sr = weights = None
    if (sr_dir / "bands_sr.xml").is_file():
        sr = calc.read_bands(sr_dir, "bands_sr", _labels(sr_dir))
        if (sr_dir / "proj.projwfc_up").is_file():
            metal, chalcogen = parse_formula(req.formula)
            weights = paper_orbital_weights(parse_projwfc_up(sr_dir / "proj.projwfc_up"), metal, chalcogen)
    map_bands = None
    if (soc_dir / "soc_map.xml").is_file() and req.dimensionality == "monolayer":
        map_bands = calc.read_bands(soc_dir, "soc_map", sigma_file=SIGMA_FILE["soc_map"])
    checks = check_monolayer(soc, map_bands) if req.dimensionality == "monolayer" else check_bulk(soc)
    out = root / "figures"
    out.mkdir(parents=True, exist_ok=True)
    from .figures import FigureInfo
    from .identity import describe_overrides

    label = req.preset.name + (f" ({describe_overrides(req.overrides)})" if req.overrides else "")
    info = FigureInfo.of(f"{req.formula} {req.dimensionality}", label, req.preset)
    files = fig2_bands(soc, sr, out, info)
    profile = {}
    if req.dimensionality == "monolayer":
        if map_bands is not None:
            files += fig3_map(unfold(map_bands), out, info)
        profile = gamma_k_profile(soc, sr, weights)
        files += fig4_gamma_k(profile, out, info)
    return FiguresDoc(material_id=req.material_id, directory=str(out), files=[str(f) for f in files],
                      checks=checks.to_dict(),
                      gamma_k_profile={k: [float(x) for x in np.asarray(v)] for k, v in profile.items()})
