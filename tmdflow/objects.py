"""Stored results as the field's objects: pymatgen ``Structure`` and ``BandStructureSymmLine``,
ASE ``Atoms``, a pandas ``DataFrame``.  pymatgen and pandas are imported on first use.

Band structures (:func:`to_bandstructure`):

- the k-points of the spin-orbit (``soc``) or scalar-relativistic (``sr``) bands run on its
  Gamma-M-K-Gamma path, the inner corners M and K twice (pymatgen's line mode: branches
  Gamma-M, M-K, K-Gamma); without a path (``path_points: 0``) its special points Gamma, K, K',
  M, Q, each a branch of its own; labelled ``\\Gamma``, ``M``, ``K``, ``K'``, ``Q`` (pymatgen's spelling);
- energies in eV as pw.x printed them (not shifted; ``get_vbm()`` gives the reference of the
  figures, which put the VBM at 0);
- spin-orbit bands as ONE spin channel (``Spin.up``): each band holds one electron, so
  pymatgen's occupation counting (two per band) does not apply to them;
- ``efermi``: pw.x's Fermi energy of the run when it lies in the gap of these bands, else the
  middle of the gap;
- the reciprocal lattice (2*pi included) and the structure of the run; projections are left
  out: <sigma_z> and the orbital weights, shaped like ``bs.bands[Spin.up]`` (band, k), come
  from :func:`band_projections`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from .analysis.vocabulary import canonical_location, gap_type_of
from .errors import InputError, ResultNotFound
from .store.documents import BandStructureDoc, MaterialDocument, StructureDoc, TaskDocument, decode_array
from .store.results import SCALAR_PATH, SPIN_ORBIT_PATH, spin_orbit_bands_step, step_document_id

if TYPE_CHECKING:  # pragma: no cover
    from .store.results import ResultsStore

#: the band sets a material result has, by the name the API takes (kind="soc" | "sr"): BandStructureDoc.kind
BAND_KINDS = {"soc": SPIN_ORBIT_PATH, "sr": SCALAR_PATH}
SPECIAL_LABELS = ("G", "K", "K'", "M", "Q")  # the first five points of every bands run (kpoints.py)
PYMATGEN_LABELS = {"Gamma": "\\Gamma"}


def material(store: "ResultsStore", ref: MaterialDocument | str) -> MaterialDocument:
    """The material document ``ref`` (a document, or its material_id)."""
    if isinstance(ref, MaterialDocument):
        return ref
    raw = store.db["materials"].find_one({"material_id": str(ref)})
    if raw is None:
        raise ResultNotFound(f"no material result {ref!r} in the store",
                             "list the ids with 'tmdflow query --fields material_id'")
    raw.pop("_id", None)
    return MaterialDocument.model_validate(raw)


def structure_of(store: "ResultsStore | None", ref) -> StructureDoc:
    """The stored (relaxed) structure of a material result, a task, or an id of either: the
    material's own ``structure``, else (documents written before it was stored) that of its
    spin-orbit bands task, else of its latest task that has one."""
    if isinstance(ref, StructureDoc):
        return ref
    if isinstance(ref, (MaterialDocument, TaskDocument)) and ref.structure is not None:
        return ref.structure
    if store is None:
        raise InputError("this document stores no structure", "pass its id, so its task documents are read")
    if isinstance(ref, TaskDocument):
        raise InputError(f"task {ref.task_id} stores no structure", "export a material result or another task")
    if isinstance(ref, str) and store.db["materials"].find_one({"material_id": ref}) is None:
        task = store.task(ref)
        if task is None:
            raise ResultNotFound(f"no material result or task {ref!r} in the store",
                                 "list the ids with 'tmdflow query --fields material_id'")
        if task.structure is None:
            raise InputError(f"task {ref} stores no structure", "export its material result instead")
        return task.structure
    mat = material(store, ref)
    if mat.structure is not None:
        return mat.structure
    candidates = [step_document_id(mat.material_id, spin_orbit_bands_step())] + [t for t in reversed(mat.task_ids)]
    for task_id in candidates:
        task = store.task(task_id)
        if task is not None and task.structure is not None:
            return task.structure
    raise InputError(f"material {mat.material_id} and its task documents store no structure",
                     "re-run its workflow (tmdflow rerun) to store it")


def with_structure(store: "ResultsStore", docs: Iterable[MaterialDocument]) -> list[MaterialDocument]:
    """Material documents with ``structure`` filled from their tasks where they lack it (older
    documents), so that ``to_structure()`` / ``to_atoms()`` work on every queried result."""
    out = []
    for doc in docs:
        if doc.structure is None:
            try:
                doc = doc.model_copy(update={"structure": structure_of(store, doc)})
            except InputError:
                pass  # no structure anywhere: to_structure() says so
        out.append(doc)
    return out


def band_document(store: "ResultsStore | None", ref, kind: str = "soc") -> BandStructureDoc:
    """The band document of a material result (document or id) or a bandstructure id."""
    if kind not in BAND_KINDS:
        raise InputError(f"unknown band-structure kind {kind!r}", "use kind='soc' (spin-orbit) or kind='sr' "
                                                                  "(scalar-relativistic, from the bands_sr step)")
    doc_kind = BAND_KINDS[kind]
    if isinstance(ref, BandStructureDoc):
        doc = ref
    else:
        if store is None:
            raise InputError("a store is needed to find the band structure", "pass settings or a document")
        if isinstance(ref, MaterialDocument) or store.db["materials"].find_one({"material_id": str(ref)}):
            doc = store.material_bandstructure(material(store, ref), doc_kind)
        else:
            doc = store.get_bandstructure(str(ref))
        if doc is None:
            bands = "spin-orbit" if kind == "soc" else "scalar-relativistic"
            what = f"the {bands} band structure of {ref.material_id if isinstance(ref, MaterialDocument) else ref}"
            raise ResultNotFound(f"{what} is not in the store",
                                 "kind='sr' needs the bands_sr step (workflows/zhu2011.yaml runs it)"
                                 if kind == "sr" else "run the bands_soc and analysis steps")
    if doc.kind != doc_kind:
        raise InputError(f"{doc.bandstructure_id} is a {doc.kind} band set, not a path ({doc_kind})",
                         "pass a material result or a bands_soc / bands_sr id")
    return doc


@dataclass(frozen=True)
class BandPath:
    """The k-points of a band document that a ``BandStructureSymmLine`` holds."""

    indices: np.ndarray
    kpoints_crystal: np.ndarray
    labels: list[str]  # pymatgen labels ('' between the corners)


def band_path(doc: BandStructureDoc) -> BandPath:
    k = decode_array(doc.kpoints_crystal).astype(float)
    labels = list(doc.labels) + [""] * (len(k) - len(doc.labels))
    has_path = len(k) > len(SPECIAL_LABELS) and tuple(labels[:len(SPECIAL_LABELS)]) == SPECIAL_LABELS
    path = range(len(SPECIAL_LABELS), len(k)) if has_path else range(len(k))
    idx, names = [], []
    for j, i in enumerate(path):
        name = canonical_location(labels[i]) if labels[i] else ""
        # a corner inside the path ends one branch and starts the next (pymatgen's line mode,
        # as VASP writes it): the point twice, so that branches are Gamma-M, M-K, K-Gamma
        repeat = 2 if has_path and name and 0 < j < len(path) - 1 else 1
        idx += [i] * repeat
        names += [PYMATGEN_LABELS.get(name, name)] * repeat
    idx = np.asarray(idx, int)
    return BandPath(idx, k[idx], names)


def _fermi(e: np.ndarray, n_occupied: int, pw_fermi: float | None) -> float:
    vbm, cbm = float(e[:, n_occupied - 1].max()), float(e[:, n_occupied].min())
    if pw_fermi is not None and vbm < pw_fermi < cbm:
        return float(pw_fermi)
    return (vbm + cbm) / 2


def _run_task(store: "ResultsStore | None", doc: BandStructureDoc) -> TaskDocument | None:
    return store.task(doc.bandstructure_id) if store is not None else None  # the step's id = the band id


def to_bandstructure(doc: BandStructureDoc, store: "ResultsStore | None" = None):
    """A pymatgen ``BandStructureSymmLine`` of a stored band document (module docstring)."""
    from pymatgen.core import Lattice
    from pymatgen.electronic_structure.bandstructure import BandStructureSymmLine
    from pymatgen.electronic_structure.core import Spin

    task = _run_task(store, doc)
    structure = task.structure if task is not None else None
    recip = doc.reciprocal_cell_inv_angstrom or (structure.reciprocal_cell_inv_angstrom if structure else None)
    if recip is None:
        raise InputError(f"{doc.bandstructure_id} has no reciprocal lattice and its task document is not in the "
                         "store", "pass the band structure by its material id with the store it came from")
    path = band_path(doc)
    e = decode_array(doc.eigenvalues_ev).astype(float)[path.indices]
    spinor = doc.kind != "sr_path"
    n_occupied = int(round(doc.n_electrons / (1 if spinor else 2)))
    pw_fermi = doc.fermi_energy_ev
    if pw_fermi is None and task is not None:
        pw_fermi = task.outputs.fermi_energy_ev
    labels_dict = {name: k for name, k in zip(path.labels, path.kpoints_crystal) if name}
    return BandStructureSymmLine(
        path.kpoints_crystal, {Spin.up: e.T}, Lattice(recip), _fermi(e, n_occupied, pw_fermi), labels_dict,
        structure=structure.to_structure() if structure is not None else None,
    )


@dataclass(frozen=True)
class BandProjections:
    """<sigma_z> and orbital weights on the k-points of :func:`to_bandstructure`, each shaped
    (bands, k-points) like ``bs.bands[Spin.up]``.

    sigma_z:          spin-orbit bands: <sigma_z> in units of hbar/2 (-1..1); None for sr
    orbital_weights:  scalar-relativistic bands (projwfc.x): M_dz2, M_dxy_dx2y2, X_pz, X_pxpy
                      (fractions 0..1); empty for soc
    """

    bandstructure_id: str
    sigma_z: np.ndarray | None
    orbital_weights: dict[str, np.ndarray] = field(default_factory=dict)


def projections_of(doc: BandStructureDoc) -> BandProjections:
    idx = band_path(doc).indices
    sz = decode_array(doc.sigma_z).astype(float)[idx].T if doc.sigma_z else None
    weights = {k: decode_array(v).astype(float)[idx].T for k, v in (doc.orbital_weights or {}).items()}
    return BandProjections(doc.bandstructure_id, sz, weights)


def material_rows(materials: Iterable[MaterialDocument], error_bars: dict[str, dict[str, float]] | None = None):
    """One dict per material result, keys with their units (the DataFrame's columns)."""
    rows = []
    for m in materials:
        s, t = m.splitting, m.table1
        bars = (error_bars or {}).get(m.material_id, {})
        rows.append({
            "material_id": m.material_id, "formula": m.formula, "dimensionality": m.dimensionality,
            "preset": m.preset, "settings": m.settings_label, "calculator": m.calculator,
            "workflow": m.identity.workflow if m.identity else None, "spin_orbit_mode": m.spin_orbit_mode,
            "a_angstrom": t.a_angstrom, "c_angstrom": t.c_angstrom, "z_in_units_of_c": t.z,
            "d_angstrom": t.d_angstrom, "relaxed": t.relaxed,
            "delta_vb_k_mev": s.delta_vb_k_mev, "delta_vb_k_error_bar_mev": bars.get("delta_vb_k_mev"),
            # signed as in Table I (docs/physics.md); NaN when the sign is unknown (spin-degenerate bulk)
            "delta_cb_k_mev": s.delta_cb_k_mev if s.delta_cb_sign_known else None,
            "delta_cb_k_magnitude_mev": abs(s.delta_cb_k_mev),
            "delta_cb_k_error_bar_mev": bars.get("delta_cb_k_mev"),
            "delta_e_gamma_k_mev": s.delta_e_gamma_k_mev,
            "delta_e_gamma_k_error_bar_mev": bars.get("delta_e_gamma_k_mev"),
            "gap_ev": s.gap_ev, "gap_type": gap_type_of(s), "vbm_location": canonical_location(s.vbm_location),
            "cbm_location": canonical_location(s.cbm_location),
            "delta_vb_kprime_mev": s.delta_vb_kprime_mev, "spin_degenerate": s.spin_degenerate,
            "n_kpoints": s.n_kpoints, "updated_at": m.updated_at,
        })
    return rows


def to_dataframe(materials: Iterable[MaterialDocument], error_bars: dict[str, dict[str, float]] | None = None):
    """A pandas DataFrame, one row per material result (columns: :func:`material_rows`; the
    same columns when no result matches)."""
    import pandas as pd

    rows = material_rows(materials, error_bars)
    frame = pd.DataFrame(rows, columns=list(material_rows([_example()])[0]))
    numeric = [c for c in frame.columns if c.endswith(("_mev", "_ev", "_angstrom", "_of_c"))]
    return frame.astype({c: float for c in numeric})  # absent values: NaN


def _example() -> MaterialDocument:
    """A material document whose only use is naming the DataFrame's columns."""
    from .analysis.splitting import SplittingResult
    from .store.documents import Table1Entry

    return MaterialDocument(
        material_id="-", formula="-", dimensionality="monolayer", preset="-", calculator="-", spin_orbit_mode="-",
        table1=Table1Entry(a_angstrom=0, d_angstrom=0, relaxed=False),
        splitting=SplittingResult(0, 0, False, 0, 0, True, "K", "K", None, None, None, None, 0))


def write_structure_file(structure: StructureDoc, path: Path) -> Path:
    """Write ``structure`` in the format ``path``'s name says: ASE's writers first (cif, vasp for
    POSCAR/CONTCAR/.vasp, extxyz, xyz, json, espresso-in for .pwi, xsf, ...), then pymatgen's."""
    from ase.io import write
    from ase.io.formats import UnknownFileTypeError, filetype, ioformats

    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path.parent} is not a directory", "create it, or write the file elsewhere")
    fmt = None
    try:
        fmt = filetype(path, read=False)
    except (UnknownFileTypeError, ValueError, OSError):
        fmt = None
    if fmt is not None and fmt in ioformats and ioformats[fmt].can_write:
        write(path, structure.to_atoms(), format=fmt)
        return path
    try:
        structure.to_structure().to(filename=str(path))
    except ValueError:
        raise InputError(f"no writer for {path.name!r}: the format is chosen by the file name",
                         "use e.g. .cif, POSCAR, .vasp, .extxyz, .xyz, .json, .pwi, .xsf") from None
    return path


def band_data(doc: BandStructureDoc, store: "ResultsStore | None" = None):
    """A stored band document as the analysis' and figures' ``tmdflow.bands.BandData`` (the
    reciprocal lattice from the document, else from its task's structure)."""
    from .bands import BandData

    recip = doc.reciprocal_cell_inv_angstrom
    if recip is None:
        task = _run_task(store, doc)
        if task is None or task.structure is None:
            raise InputError(f"{doc.bandstructure_id} has no reciprocal lattice and its task document is not in "
                             "the store", "read it with the store it came from")
        recip = task.structure.reciprocal_cell_inv_angstrom
    return BandData(
        kpoints_crystal=decode_array(doc.kpoints_crystal).astype(float),
        eigenvalues=decode_array(doc.eigenvalues_ev).astype(float), n_electrons=doc.n_electrons,
        spinor=doc.kind != "sr_path", reciprocal_cell=np.asarray(recip, float),
        sigma_z=decode_array(doc.sigma_z).astype(float) if doc.sigma_z else None, labels=tuple(doc.labels),
    )
