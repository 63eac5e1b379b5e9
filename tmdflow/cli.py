"""The ``tmdflow`` command."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import click

from . import __version__
from .errors import TmdflowError


class Progress:
    """One status line per running step: material, step, elapsed (rewritten in place on a TTY)."""

    def __init__(self, stream=sys.stderr, interval: float = 15.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval
        self._last = 0.0
        self._last_key = ""

    def __call__(self, message: str) -> None:
        key = message.rsplit(" ", 2)[0] if message.endswith(" s") else message
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + message)
            self.stream.flush()
        elif key != self._last_key or now - self._last >= self.interval:
            self.stream.write(message + "\n")
            self.stream.flush()
            self._last = now
        self._last_key = key

    def done(self, message: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(message + "\n")
        self.stream.flush()


def _fail(exc: TmdflowError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tmdflow")
def main() -> None:
    """tmdflow: spin-orbit splitting of 2D transition-metal dichalcogenides from first principles.

    \b
    Quick start:
      tmdflow compute MoS2 --preset quick      one monolayer, Quantum ESPRESSO, ~1 min on 2 cores
      tmdflow paper --preset quick             the four monolayers of Zhu et al. (2011) beside the paper
      tmdflow analyze RUN_DIR                  Delta at K from a spin-orbit pw.x run you made by hand

    Machine settings come from ~/.tmdflow.yaml or TMDFLOW_* variables (see docs/user-guide.md).
    """


def _machine_options(f):
    f = click.option("--nprocs", type=int, help="MPI processes for pw.x [TMDFLOW_NPROCS; default: all cores]")(f)
    f = click.option("--work-dir", type=click.Path(path_type=Path), help="where runs are written [TMDFLOW_WORK_DIR]")(f)
    f = click.option("--pseudo-dir", "user_pseudo_dir", type=click.Path(path_type=Path),
                     help="use your own fully relativistic UPF files instead of generating them")(f)
    return f


def _run_compute(formulas, preset_name, overrides, a, d, vacuum, nprocs, work_dir, user_pseudo_dir, as_json):
    from .compute import compute_material
    from .presets import load_preset
    from .report import splitting_table
    from .settings import load_settings

    try:
        preset = load_preset(preset_name, overrides)
        settings = load_settings(nprocs=nprocs, work_dir=work_dir, user_pseudo_dir=user_pseudo_dir)
        from .materials import parse_formula

        for f in formulas:  # validate every formula before the first pw.x run
            parse_formula(f)
        progress = Progress()
        results = []
        for f in formulas:
            start = time.monotonic()
            r = compute_material(f, preset, settings, a=a, d=d, vacuum=vacuum, progress=progress)
            progress.done(f"{r.formula}: done in {time.monotonic() - start:.0f} s "
                          f"(Δ_VB(K) = {r.splitting.delta_vb_k_mev:.1f} meV)")
            results.append(r)
    except TmdflowError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2, default=str))
    else:
        click.echo(f"\npreset '{preset.name}': {preset.description}")
        click.echo(splitting_table((r.formula, r.splitting) for r in results))


@main.command()
@click.argument("formulas", nargs=-1, required=True)
@click.option("--preset", "preset_name", default="quick", show_default=True, help="settings from inputs/presets/")
@click.option("--a", type=float, help="in-plane lattice constant (Angstrom); default: inputs/materials.yaml")
@click.option("--d", type=float, help="vertical M-X separation (Angstrom); default: inputs/materials.yaml")
@click.option("--vacuum", type=float, help="vacuum between layers (Angstrom); default: the preset's")
@click.option("--kmesh", type=int, help="override the preset's n x n x 1 SCF mesh")
@click.option("--ecutwfc", type=float, help="override the preset's wavefunction cut-off (Ry)")
@click.option("--ecutrho", type=float, help="override the preset's density cut-off (Ry)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@_machine_options
def compute(formulas, preset_name, a, d, vacuum, kmesh, ecutwfc, ecutrho, as_json, nprocs, work_dir, user_pseudo_dir):
    """Spin-orbit calculation of MX2 monolayers and their splittings at K.

    FORMULAS: one or more MX2 formulas, M in Cr, Mo, W and X in S, Se, Te (e.g. MoS2 WSe2).
    """
    overrides = {"kmesh": kmesh, "ecutwfc": ecutwfc, "ecutrho": ecutrho}
    _run_compute(formulas, preset_name, overrides, a, d, vacuum, nprocs, work_dir, user_pseudo_dir, as_json)


@main.command()
@click.option("--preset", "preset_name", default="quick", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@_machine_options
def paper(preset_name, as_json, nprocs, work_dir, user_pseudo_dir):
    """The four monolayers of Zhu, Cheng & Schwingenschloegl (2011) at the paper's geometry."""
    from .analysis.paper import paper_formulas

    _run_compute(paper_formulas(), preset_name, {}, None, None, None, nprocs, work_dir, user_pseudo_dir, as_json)


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--formula", help="label for the table (e.g. MoS2) to show the paper's values beside")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def analyze(path, formula, as_json):
    """Splittings at K, dE(Gamma-K) and the gap of a spin-orbit pw.x run.

    PATH is a run directory (holding <prefix>.save/data-file-schema.xml and/or the pw.x output),
    an XML file, or a pw.x text output.  The k list must contain Gamma and K = (1/3, 1/3, 0).
    """
    from .analyze import analyze_path
    from .report import splitting_table

    try:
        source, result = analyze_path(path)
    except TmdflowError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({"source": source, **asdict(result)}, indent=2))
    else:
        click.echo(f"source: {source}")
        click.echo(splitting_table([(formula or "?", result)]))


@main.group()
def pseudo() -> None:
    """Pseudopotentials generated with ld1.x from recipes in inputs/pseudo_recipes/."""


@pseudo.command("build")
@click.argument("elements", nargs=-1)
@click.option("--family", default="pslibrary-paw", show_default=True)
def pseudo_build(elements, family):
    """Generate (or verify cached) rel=1 and rel=2 UPF files; all recipe elements by default."""
    from .pseudo import ensure_pseudopotentials
    from .pseudo.recipes import load_family
    from .settings import load_settings

    try:
        settings = load_settings()
        elements = elements or tuple(load_family(family))
        ps = ensure_pseudopotentials(elements, family, settings.pseudo_dir, ld1_command=settings.ld1_command,
                                     progress=lambda m: click.echo(m, err=True))
    except TmdflowError as exc:
        _fail(exc)
    for table in (ps.scalar, ps.full):
        for el, pf in sorted(table.items()):
            worst = max(pf.checks.get("max_eigenvalue_error_ry", {0: 0}).values())
            click.echo(f"{pf.path}  sha256 {pf.sha256[:12]}  ld1 {pf.ld1_version}  "
                       f"max|E_AE-E_PS| {worst * 1000:.2f} mRy")


@main.command()
def presets():
    """List the presets in inputs/presets/."""
    from .presets import available_presets, load_preset

    for name in available_presets():
        p = load_preset(name)
        click.echo(f"{name:8s} {p.description}  [{p.kmesh}x{p.kmesh}x1, {p.ecutwfc:g}/{p.ecutrho:g} Ry, "
                   f"vacuum {p.vacuum:g} A, {p.pseudo_family}]")


if __name__ == "__main__":
    main()
