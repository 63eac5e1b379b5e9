"""`tmdflow report`: one self-contained HTML (images embedded) or Markdown (+ image files)
report of a run, built from the results store: Table I, the Delta/dE table, the physics
checks, the Fig. 2-4 analogues, the settings and the provenance of every number.

The figures are the files the figures step wrote into the run directory.  When that directory is
not on this machine (scratch purged, a restored backup, another host) the report redraws them
from what the store holds -- the band documents (path, scalar-relativistic path, map with
<sigma_z>) and the figures document's Gamma-K profile -- and says so under each one."""

from __future__ import annotations

import base64
import html
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .analysis.paper import paper_citation
from .analysis.table1 import COLUMNS, cell_text, table1_rows
from .errors import TmdflowError
from .phonons import DISPERSION_STEM
from .store.documents import BAND_MAP_KIND, BAND_MAP_WANNIER_KIND, FiguresDoc, MaterialDocument, PhononDoc, TaskDocument
from .store.results import SCALAR_PATH, MaterialQuery, ResultsStore

FIGURE_ORDER = ("fig2_bands", "fig3_splitting_map", "fig3_contours", "fig4_gamma_k")
CAPTIONS = {
    "fig2_bands": "Fig. 2 analogue: bands on Γ–M–K–Γ with (solid, coloured by ⟨σz⟩) and without (dotted) "
                  "spin–orbit coupling; zero at the spin–orbit VBM.",
    "fig3_splitting_map": "Fig. 3 analogue: E(↑) − E(↓) of the uppermost valence and lowermost conduction "
                          "pairs over the first Brillouin zone (hexagon); at K +Δ_VB(K) and −Δ_CB(K) for spin ↑ "
                          "at the top of the valence band (docs/physics.md).",
    "fig3_contours": "Fig. 3 analogue: UVB iso-energy lines at binding energies 0.2, 0.5, 0.8 eV coloured by spin.",
    "fig4_gamma_k": "Fig. 4 analogue: (a) Δ_VB(k), (b) Δ_CB(k) along Γ–K in Table I's sign convention (at K the "
                    "table's values), (c, d) orbital characters of the scalar-relativistic UVB and LCB (projwfc.x).",
    DISPERSION_STEM: "Phonon dispersion (phonopy finite displacements, Quantum ESPRESSO forces).",
}


@dataclass
class MaterialSection:
    material: MaterialDocument
    figures: FiguresDoc | None
    tasks: list[TaskDocument]
    error_bars: dict[str, float] | None = None  # from a convergence study, meV
    phonons: PhononDoc | None = None
    panel: tuple | None = None  # (FigureInfo, SOC BandData, SR BandData | None): the multi-panel Fig. 2
    map_bands: object | None = None  # the soc_map BandData, loaded only to redraw Fig. 3 (files not on disk)
    model_bands: object | None = None  # the wannier_map step's BandData (Fig. 3 from the Wannier model), ditto
    figures_gone: bool = False  # the figures step's files are not on this machine (figures_on_disk, looked at once)


def collect(store: ResultsStore, preset: str | None, calculator: str | None) -> list[MaterialSection]:
    materials = store.materials(MaterialQuery(preset=preset, calculator=calculator))
    bars = store.error_bars(materials)
    sections = []
    for m in materials:
        # the material's own steps only: a legacy id is a prefix of newer ids with a hash
        tasks = store.tasks({"task_id": {"$regex": f"^{re.escape(m.material_id)}-[a-z_]+$"}})
        figures = store.figures(m.material_id)
        redraw = not figures_on_disk(figures)
        sections.append(MaterialSection(m, figures, tasks, bars.get(m.material_id), store.phonons(m.material_id),
                                        _panel(store, m), _map_bands(store, m, BAND_MAP_KIND) if redraw else None,
                                        _map_bands(store, m, BAND_MAP_WANNIER_KIND) if redraw else None, redraw))
    return sections


def figures_on_disk(figures: FiguresDoc | None) -> bool:
    """Whether every file the figures step listed is still where it wrote it (no figures: nothing
    to redraw, True)."""
    return figures is None or all(Path(f).is_file() for f in figures.files)


def _map_bands(store: ResultsStore, m: MaterialDocument, kind: str):
    from .objects import band_data

    doc = store.material_bandstructure(m, kind) if m.dimensionality == "monolayer" else None
    if doc is None or not doc.sigma_z:
        return None
    try:
        return band_data(doc, store)
    except TmdflowError:
        return None


def redraw_figures(s: MaterialSection, folder: Path) -> Path | None:
    """A monolayer's Fig. 2-4 drawn again from the store into ``folder``/<material id> (the run
    directory's files are gone): Fig. 2 from the band documents, Fig. 3 from the map's (with its
    check points, so the interpolation is validated as in the figures step), Fig. 4 from the stored
    Gamma-K profile.  None when the store does not hold the bands of a path."""
    import numpy as np

    from .analysis.bzinterp import map_for_figure
    from .figures import draw_figures

    if s.figures is None or s.panel is None:
        return None
    info, soc, sr = s.panel
    out = folder / s.material.material_id
    out.mkdir(parents=True, exist_ok=True)
    drawn = None
    if s.map_bands is not None and info.map_points:
        try:
            drawn = map_for_figure(s.map_bands, info.map_points, s.model_bands)
        except TmdflowError:  # a map the stored preset does not describe: no Fig. 3 rather than a wrong one
            drawn = None
    draw_figures(out, info, soc, sr, drawn, {k: np.asarray(v) for k, v in s.figures.gamma_k_profile.items()})
    return out


def _panel(store: ResultsStore, m: MaterialDocument):
    """The stored spin-orbit (and scalar-relativistic) path bands of a monolayer for Fig. 2."""
    from .figures import FigureInfo
    from .objects import band_data

    if m.dimensionality != "monolayer" or not m.bandstructure_id:
        return None
    soc_doc, sr_doc = store.get_bandstructure(m.bandstructure_id), store.material_bandstructure(m, SCALAR_PATH)
    if soc_doc is None or len(soc_doc.labels) <= 5:  # no Gamma-M-K-Gamma path in the bands run
        return None
    p = store.result_settings(m)
    info = FigureInfo(f"{m.formula} monolayer", m.settings_label, int(p.get("kmesh", 0)), int(p.get("path_points", 0)),
                      int(p.get("map_points", 0)), f"{p.get('ecutwfc', 0):g}/{p.get('ecutrho', 0):g} Ry")
    try:
        return info, band_data(soc_doc, store), band_data(sr_doc, store) if sr_doc is not None else None
    except TmdflowError:
        return None


def _fig2_groups(sections: list[MaterialSection], folder: Path) -> list[tuple[str, Path]]:
    """The multi-panel Fig. 2 of each settings label with a path (the paper's four monolayers
    side by side): (caption, PNG)."""
    from .figures import fig2_panels

    groups: dict[str, list] = {}
    for s in sections:
        if s.panel is not None:
            groups.setdefault(s.material.settings_label, []).append(s.panel)
    order = {f: i for i, f in enumerate(("MoS2", "MoSe2", "WS2", "WSe2"))}
    out = []
    if groups:
        folder.mkdir(parents=True, exist_ok=True)
    for n, (label, panels) in enumerate(sorted(groups.items())):
        panels.sort(key=lambda p: (order.get(p[0].material.split()[0], 9), p[0].material))
        files = fig2_panels(panels, folder, stem=f"fig2_monolayers_{n}")
        if files:
            out.append((f"Fig. 2: the monolayers side by side ({label}); spin–orbit bands solid, coloured by ⟨σz⟩, "
                        "scalar-relativistic dotted, zero at each material's spin–orbit VBM.", files[0]))
    return out


def _provenance_rows(section: MaterialSection) -> list[list[str]]:
    rows = []
    for t in sorted(section.tasks, key=lambda t: str(t.created_at)):
        pseudos = ", ".join(f"{p.file} [{p.source}] ({p.sha256[:12]})" for p in t.pseudopotentials.values()) or "—"
        notes = [f"{c.handler}: {c.changes}" for c in t.corrections]
        out = t.outputs
        slab = out.slab_stress_kbar
        if slab is not None:  # monolayer relaxation: sigma_zz must vanish; its size is the stress's basis-set error
            szz = slab.sigma_zz_basis if slab.sigma_zz_basis is not None else slab.sigma_zz
            notes.append(f"slab sigma_zz {szz:+.2f} kbar without residual forces (sigma_xx {slab.sigma_xx:+.2f})")
        rungs = out.relax_rungs or []
        if len(rungs) > 1:  # the relaxations of the cut-off ladder, each with its cost
            notes.append("relaxations: " + ", ".join(
                f"{r.ecutwfc:g}/{r.ecutrho:g} Ry a {r.a_angstrom:.4f} A sigma_zz {r.sigma_zz_basis_kbar:+.2f} "
                f"kbar ({r.pw_cpu_seconds or 0:.0f} s CPU{', reused' if r.reused else ''})" for r in rungs))
        interrupted = out.pw_runs_interrupted
        if interrupted:  # resumed after max_seconds: the CPU column counts every run
            notes.append(f"resumed after max_seconds ({interrupted} interrupted run(s), kept as "
                         f"{t.step}.out.1…; CPU includes them)")
        unconverged = out.unconverged_eigenvalues
        if unconverged:
            notes.append(f"{unconverged} eigenvalue(s) short of the Davidson threshold (pw.x c_bands)")
        corr = "; ".join(notes) or "—"
        cpu = out.pw_cpu_seconds
        post = out.postprocessing_cpu_seconds
        cpu_text = f"{cpu:.0f}" if cpu is not None else "—"
        if post is not None:
            cpu_text += f" + {post:.0f}"
        rows.append([t.step, t.state, t.code_version or "?", f"{t.wall_seconds or 0:.0f}",
                     cpu_text, t.host or "?", pseudos, corr])
    return rows


def _settings_rows(section: MaterialSection) -> list[list[str]]:
    """The preset each step ran with; a key whose value differed between steps (a preset changed
    while a study was resumed) lists every value with its steps, '(not set)' where a step's preset
    predates the key."""
    tasks = [t for t in sorted(section.tasks, key=lambda t: str(t.created_at)) if (t.inputs or {}).get("preset")]
    keys: list[str] = []
    for t in tasks:
        keys += [k for k in t.inputs["preset"] if k not in keys]
    keys = [k for k in keys if not k.startswith("wien2k_") or section.material.calculator == "wien2k"]
    rows = []
    for key in keys:
        by_value: dict[str, list[str]] = {}
        for t in tasks:
            by_value.setdefault(str(t.inputs["preset"].get(key, "(not set)")), []).append(t.step)
        if len(by_value) == 1:
            rows.append([key, next(iter(by_value))])
        else:
            rows.append([key, "; ".join(f"{v} ({', '.join(steps)})" for v, steps in by_value.items())])
    return rows


def _checks_rows(f: FiguresDoc | None) -> list[list[str]]:
    if f is None:
        return []
    c = f.checks
    def shown(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else "—" if v is None else str(v)  # not measured or not applicable

    return [[k, shown(v)] for k, v in c.items() if k not in ("failures",)] + \
        [["failures", "; ".join(c.get("failures") or []) or "none"]]


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _table1(sections: list[MaterialSection]) -> tuple[list[str], list[list[str]]]:
    bars = {s.material.material_id: s.error_bars for s in sections if s.error_bars}
    rows = table1_rows([s.material for s in sections], error_bars=bars)
    return [c.header for c in COLUMNS], [[cell_text(r, c) for c in COLUMNS] for r in rows]


def heading_fmt(fmt: str) -> str:
    return "<h3>{}</h3>" if fmt == "html" else "\n### {}\n"


def write_report(sections: list[MaterialSection], out: Path, fmt: str = "html", title: str = "tmdflow report") -> Path:
    """Write the report to ``out`` (a file for html; for markdown a file beside an images/ folder)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t1_headers, t1_rows = _table1(sections)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    table = _html_table if fmt == "html" else _md_table
    parts: list[str] = []
    if fmt == "html":
        parts.append(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                     "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;"
                     "font-size:12px;margin:8px 0}td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}"
                     "img{max-width:100%}.fail{color:#b00}.ok{color:#070}</style></head><body>")
        parts.append(f"<h1>{html.escape(title)}</h1><p>Generated {stamp} from the results store. Reference: "
                     f"{html.escape(paper_citation())}.</p><h2>Table I and spin splittings</h2>")
    else:
        parts.append(f"# {title}\n\nGenerated {stamp} from the results store. Reference: {paper_citation()}.\n\n"
                     "## Table I and spin splittings\n")
    parts.append(table(t1_headers, t1_rows))
    images = out.parent / (out.stem + "_images")
    redraw_root = out.parent / (out.stem + "_figures")  # figures redrawn from the store, with their CSV
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for caption, png in _fig2_groups(sections, Path(tmp) if fmt == "html" else images):
            if fmt == "html":
                data = base64.b64encode(png.read_bytes()).decode()
                parts.append(f"<figure><img src='data:image/png;base64,{data}'/><figcaption>{html.escape(caption)}"
                             "</figcaption></figure>")
            else:
                parts.append(f"\n![{caption}]({images.name}/{png.name})\n\n*{caption}*\n")
    for s in sections:
        m = s.material
        name = f"{m.formula} {m.dimensionality} ({m.settings_label}, {m.calculator}" + (
            f", workflow {m.identity.workflow})" if m.identity else ")")
        checks = s.figures.checks if s.figures else None
        verdict = "not run" if checks is None else ("passed" if checks.get("passed") else "FAILED")
        if fmt == "html":
            cls = "ok" if verdict == "passed" else "fail"
            parts.append(f"<h2>{html.escape(name)}</h2><p>Physics checks: <b class='{cls}'>{verdict}</b></p>")
        else:
            parts.append(f"\n## {name}\n\nPhysics checks: **{verdict}**\n")
        if checks:
            parts.append(table(["check", "value"], _checks_rows(s.figures)))
        stems = list(FIGURE_ORDER)
        if s.phonons:
            from .phonons import THZ_TO_CM1

            res = s.phonons.result
            parts.append((heading_fmt(fmt)).format(f"Phonons ({res['supercell']}×{res['supercell']}×1): "
                                                    f"{s.phonons.verdict}"))
            parts.append(table(["q", "frequencies (cm⁻¹)"],
                               [[q, ", ".join(f"{f * THZ_TO_CM1:.1f}" for f in sorted(res["frequencies_thz"][q]))]
                                for q in ("G", "M", "K")]))
            stems.append(DISPERSION_STEM)
        folder = s.figures.directory if s.figures else (str(Path(s.phonons.files[0]).parent) if s.phonons else None)
        phonon_folder = str(Path(s.phonons.files[0]).parent) if s.phonons and s.phonons.files else folder
        redrawn = ""
        if s.figures_gone:
            again = redraw_figures(s, redraw_root)
            gone = f"the figures step's files ({s.figures.directory}) are not on this machine"
            if again is not None:
                folder, redrawn = str(again), f" Redrawn from the results store: {gone}."
            else:
                parts.append(f"<p>Figures: {html.escape(gone)}, and the store does not hold what redraws them "
                             "(bulk, or no band path).</p>" if fmt == "html" else
                             f"\nFigures: {gone}, and the store does not hold what redraws them (bulk, or no band "
                             "path).\n")
        for stem in stems:
            where = phonon_folder if stem == DISPERSION_STEM else folder
            png = Path(where) / f"{stem}.png" if where else None
            if png is None or not png.is_file():
                continue
            if fmt == "html":
                data = base64.b64encode(png.read_bytes()).decode()
                parts.append(f"<figure><img src='data:image/png;base64,{data}'/><figcaption>"
                             f"{html.escape(CAPTIONS[stem] + redrawn)} Data: {html.escape(str(png.with_suffix('.csv')))}"
                             "</figcaption></figure>")
            else:
                images.mkdir(parents=True, exist_ok=True)
                target = images / f"{m.material_id}-{stem}.png"
                shutil.copyfile(png, target)
                parts.append(f"\n![{CAPTIONS[stem]}]({images.name}/{target.name})\n\n*{CAPTIONS[stem]}{redrawn}*\n")
        heading = heading_fmt(fmt)
        parts.append(heading.format("Settings"))
        parts.append(table(["parameter", "value"], _settings_rows(s)))
        parts.append(heading.format("Provenance"))
        parts.append(table(["step", "state", "code", "wall s", "CPU s (pw.x + bands.x/projwfc.x)", "host", "pseudopotentials [family] (sha256)", "corrections / notes"],
                           _provenance_rows(s)))
    if fmt == "html":
        parts.append("</body></html>")
    out.write_text("\n".join(parts) + "\n")
    return out
