"""The ``tmdflow`` command."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import click

from . import __version__
from .errors import InputError, TmdflowError


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
    """The documented failure of every command: ``error: <problem> (<remedy>)`` on stderr, exit code
    the error class's (tmdflow.errors; docs/user-guide.md)."""
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


class _Main(click.Group):
    """Every command's errors end here: a TmdflowError raised anywhere in a command (or a
    sub-group's) is reported by :func:`_fail`; a database fault anywhere (server gone mid-run, a
    read-only user writing) is a named StoreError with the password scrubbed, never a traceback."""

    def invoke(self, ctx):
        from pymongo.errors import PyMongoError

        try:
            return super().invoke(ctx)
        except TmdflowError as exc:
            _fail(exc)
        except PyMongoError as exc:
            from .settings import load_settings
            from .store.connection import store_error_from

            try:
                uri = load_settings().db_uri
            except TmdflowError:
                uri = ""
            _fail(store_error_from(exc, uri))


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tmdflow")
def main() -> None:
    """tmdflow: spin-orbit splitting of 2D transition-metal dichalcogenides from first principles.

    \b
    Quick start:
      tmdflow compute MoS2 --preset quick      one monolayer, Quantum ESPRESSO, ~1 min on 2 cores
      tmdflow paper --preset quick             the four monolayers of Zhu et al. (2011) beside the paper
      tmdflow analyze RUN_DIR                  Delta at K from a spin-orbit pw.x run you made by hand
    \b
    Workflows (FireWorks) and the results store (MongoDB or the embedded file store):
      tmdflow submit workflows/zhu2011.yaml    add a batch to the LaunchPad
      tmdflow launch [--queue]                 run it here, or submit jobs to SLURM/PBS
      tmdflow status | query | table1          watch, query results, regenerate Table I
      tmdflow priority '*-monolayer-*' 1       run these workflows first
      tmdflow rerun 12                         run step 12 and the steps after it again
      tmdflow run workflows/quick.yaml         submit + launch + table in one go (make run)

    Machine settings come from ~/.tmdflow.yaml or TMDFLOW_* variables (see docs/user-guide.md).
    """
    _no_world_access()


def _no_world_access() -> None:
    """Files tmdflow writes (results, settings, launch records, reports) are not readable by
    others: the user's umask, with the 'others' bits added (group access stays as the user set
    it, for project groups on clusters).  The store and its backups are 0600 in any case."""
    import os

    os.umask(os.umask(0) | 0o007)


def _machine_options(f):
    f = click.option("--nprocs", type=int, help="MPI processes for pw.x [TMDFLOW_NPROCS; default: all cores]")(f)
    f = click.option("--work-dir", type=click.Path(path_type=Path), help="where runs are written [TMDFLOW_WORK_DIR]")(f)
    f = click.option("--pseudo-dir", "user_pseudo_dir", type=click.Path(path_type=Path),
                     help="use your own fully relativistic UPF files instead of generating them")(f)
    return f


def _run_compute(formulas, preset_name, overrides, a, d, vacuum, nprocs, work_dir, user_pseudo_dir, as_json,
                 calculator="espresso"):
    from .compute import compute_material
    from .presets import load_preset
    from .report import splitting_table
    from .settings import load_settings

    preset = load_preset(preset_name, overrides)
    settings = load_settings(nprocs=nprocs, work_dir=work_dir, user_pseudo_dir=user_pseudo_dir)
    from .materials import parse_formula

    for f in formulas:  # validate every formula before the first pw.x run
        parse_formula(f)
    from .structures import check_geometry

    check_geometry(a=a, d=d, vacuum=vacuum)  # finite, in range (docs/user-guide.md, "Validation bounds")
    settings.check_run_directories()  # work_dir / pseudo_dir writable directories, before any run
    progress = Progress()
    results = []
    for f in formulas:
        start = time.monotonic()
        r = compute_material(f, preset, settings, a=a, d=d, vacuum=vacuum, progress=progress,
                             calculator=calculator)
        progress.done(f"{r.formula}: done in {time.monotonic() - start:.0f} s "
                      f"(Δ_VB(K) = {r.splitting.delta_vb_k_mev:.1f} meV)")
        results.append(r)
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
@click.option("--structure", "structure_file", type=click.Path(path_type=Path),
              help="take a and d from a monolayer CIF/POSCAR file (formula from the file: FORMULAS may be '-')")
@click.option("--kmesh", type=int, help="override the preset's n x n x 1 SCF mesh")
@click.option("--ecutwfc", type=float, help="override the preset's wavefunction cut-off (Ry)")
@click.option("--ecutrho", type=float, help="override the preset's density cut-off (Ry)")
@click.option("--calculator", default="espresso", show_default=True,
              help="the code that runs: espresso, or elk (all-electron; presets elk-quick / elk-paper)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@_machine_options
def compute(formulas, preset_name, a, d, vacuum, structure_file, kmesh, ecutwfc, ecutrho, calculator, as_json, nprocs,
            work_dir, user_pseudo_dir):
    """Spin-orbit calculation of MX2 monolayers and their splittings at K.

    FORMULAS: one or more MX2 formulas, M in Cr, Mo, W and X in S, Se, Te (e.g. MoS2 WSe2).
    """
    if structure_file:
        from .structure_input import read_geometry

        geo = read_geometry(structure_file)
        if geo.dimensionality != "monolayer":
            raise InputError(f"{structure_file} holds a {geo.dimensionality}; compute runs monolayers",
                             "give a monolayer file, or use a workflow with structure_files for bulk")
        if formulas not in (("-",), (geo.formula,)):
            raise InputError(f"{structure_file} holds {geo.formula}, not {' '.join(formulas)}",
                             f"run 'tmdflow compute {geo.formula} --structure {structure_file}' (or '-')")
        formulas, a, d = (geo.formula,), geo.a, geo.d
    overrides = {"kmesh": kmesh, "ecutwfc": ecutwfc, "ecutrho": ecutrho}
    _run_compute(formulas, preset_name, overrides, a, d, vacuum, nprocs, work_dir, user_pseudo_dir, as_json,
                 calculator)


@main.command()
@click.option("--preset", "preset_name", default="quick", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@_machine_options
def paper(preset_name, as_json, nprocs, work_dir, user_pseudo_dir):
    """The four monolayers of Zhu, Cheng & Schwingenschloegl (2011) at the paper's geometry."""
    from .analysis.paper import paper_formulas

    _run_compute(paper_formulas(), preset_name, {}, None, None, None, nprocs, work_dir, user_pseudo_dir, as_json)


def _analyze_fail(exc: TmdflowError, as_json: bool) -> None:
    """analyze's errors: with --json a JSON object on stdout (and the same exit code)."""
    if not as_json:
        _fail(exc)
    click.echo(json.dumps({"error": {"type": type(exc).__name__, "exit_code": exc.exit_code,
                                     "problem": exc.problem, "remedy": exc.remedy}}, indent=2))
    sys.exit(exc.exit_code)


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--formula", help="label for the table (e.g. MoS2) to show the paper's values beside")
@click.option("--allow-unconverged", is_flag=True,
              help="analyse a run whose SCF did not converge (refused otherwise: exit 31); the result is labelled")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (errors too)")
def analyze(path, formula, allow_unconverged, as_json):
    """Splittings at K, dE(Gamma-K) and the gap of a spin-orbit pw.x run.

    PATH is a run directory (holding <prefix>.save/data-file-schema.xml and/or the pw.x output),
    an XML file, or a pw.x text output.  The k list must contain Gamma and K = (1/3, 1/3, 0).
    A run whose SCF did not converge is refused (exit 31) unless --allow-unconverged is given.
    """
    from .analyze import analyze_path
    from .report import splitting_table

    try:
        run = analyze_path(path, allow_unconverged=allow_unconverged)
    except TmdflowError as exc:
        _analyze_fail(exc, as_json)
    except Exception as exc:  # a parser bug: reported like any error, without a traceback
        _analyze_fail(TmdflowError(f"unexpected {type(exc).__name__} while reading {path}: {exc}",
                                   "this is a tmdflow bug; report it with the files"), as_json)
    if as_json:
        click.echo(json.dumps({"source": run.source, **asdict(run.result), "scf_converged": run.scf_converged,
                               "scf_source": run.scf_source, "warning": run.warning}, indent=2))
    else:
        click.echo(f"source: {run.source}")
        if run.warning:
            click.echo(f"WARNING: {run.warning}")
        click.echo(splitting_table([(formula or "?", run.result)]))
        if run.warning:
            click.echo("WARNING: SCF NOT CONVERGED -- the numbers above are not self-consistent")


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
    from .settings import check_writable_dir, load_settings

    settings = load_settings()
    check_writable_dir(settings.pseudo_dir, "pseudo_dir")  # a file or read-only cache: named, before ld1.x
    recipes = load_family(family)
    elements = elements or tuple(recipes)
    ps = ensure_pseudopotentials(elements, family, settings.pseudo_dir, ld1_command=settings.ld1_command,
                                 progress=lambda m: click.echo(m, err=True))
    for table in (ps.scalar, ps.full):
        for el, pf in sorted(table.items()):
            worst = max(pf.checks.get("max_eigenvalue_error_ry", {0: 0}).values())
            line = (f"{pf.path}  sha256 {pf.sha256[:12]}  ld1 {pf.ld1_version}  "
                    f"max|E_AE-E_PS| {worst * 1000:.2f} mRy")
            splittings = pf.checks.get("spin_orbit_splittings_mev")
            if splittings:
                recipe = recipes[el]
                errors = [(abs(ps_ - ae) / recipe.spin_orbit_tolerance_mev(ae), ps_ - ae, ae, label)
                          for per_level in splittings.values() for label, (ae, ps_) in per_level.items()]
                _, err, ae, label = max(errors)
                line += (f"  spin-orbit splitting nearest its tolerance: {label} {ae:.1f} meV (AE), "
                         f"PS {err:+.2f} meV ({abs(err) / ae:.2%})")
            click.echo(line)


@main.command()
def presets():
    """List the presets in inputs/presets/."""
    from .presets import available_presets, load_preset

    for name in available_presets():
        p = load_preset(name)
        click.echo(f"{name:8s} {p.description}  [{p.kmesh}x{p.kmesh}x1, {p.ecutwfc:g}/{p.ecutrho:g} Ry, "
                   f"vacuum {p.vacuum:g} A, {p.pseudo_family}"
                   + "".join(f", {el} from {f}" for el, f in sorted(p.element_pseudo_families.items())) + "]")


# -- workflows and the results store --------------------------------------------------------

def _settings_or_fail():
    """The machine settings; a bad settings file or TMDFLOW_* value fails the command (``_Main``)."""
    from .settings import load_settings

    return load_settings()


@main.command()
@click.argument("workflow", type=click.Path(path_type=Path))
@click.option("--preset", "preset_name", help="replace the workflow's preset")
@click.option("--calculator", help="replace the workflow's calculator (espresso, wien2k, elk)")
@click.option("--materials", help="replace the workflow's materials, e.g. MoTe2,WTe2,CrS2")
@click.option("--force", is_flag=True, help="add again even if this workflow was submitted before")
def submit(workflow, preset_name, calculator, materials, force):
    """Add a workflow batch (YAML in workflows/) to the LaunchPad; prints the workflow ids."""
    from . import api

    formulas = [m.strip() for m in materials.split(",") if m.strip()] if materials else None
    results = api.submit(workflow, preset_name, force, calculator=calculator, materials=formulas)
    from .workflow_spec import load_workflow

    skipped = load_workflow(workflow, preset_name, calculator, formulas).skipped_steps()
    if skipped:
        click.echo(f"note: steps {', '.join(skipped)} are not implemented for this calculator: not submitted",
                   err=True)
    for r in results:
        state = "already submitted (use --force to add again)" if r.skipped else "added"
        if r.appended:
            state = f"extended with {len(r.appended)} step(s): fw_ids {r.appended[0]}-{r.appended[-1]}"
        click.echo(f"{r.key:40s} fw_ids {r.fw_ids[0]}-{r.fw_ids[-1]}  {state}")


@main.command()
@click.option("--max-launches", type=int, default=0,
              help="stop after N Fireworks (0: until none is ready); with --queue: at most N per job")
@click.option("--recover", is_flag=True,
              help="first rerun Fireworks whose runs were lost (launcher on this host gone: at once; else after --expiration)")
@click.option("--expiration", type=int, default=3600, show_default=True,
              help="seconds without a ping = lost (runs of other hosts)")
@click.option("--max-seconds", type=float,
              help="time budget: no Firework starts after it, each program gets the time left as max_seconds "
                   "(a queue job's walltime minus margin)")
@click.option("--queue", "use_queue", is_flag=True, help="submit jobs to SLURM/PBS instead of running here")
@click.option("--qadapter", type=click.Path(path_type=Path), help="queue YAML (default inputs/queue/slurm.yaml)")
@click.option("--njobs", type=int, default=1, show_default=True,
              help="with --queue: at most N jobs in the queue at once (never more pending than READY Fireworks)")
@click.option("--rapidfire", is_flag=True,
              help="with --queue: keep submitting (every --sleep s) until no READY work and no job is left")
@click.option("--sleep", "sleep_seconds", type=float, default=60.0, show_default=True,
              help="with --rapidfire: seconds between looks at the queue and the LaunchPad")
@click.option("--dry-run", is_flag=True, help="with --queue: print the job script instead of submitting")
def launch(max_launches, recover, expiration, max_seconds, use_queue, qadapter, njobs, rapidfire, sleep_seconds,
           dry_run):
    """Run READY Fireworks here (with progress), or submit queue jobs that run them with --queue.

    \b
    Exit status: 0 all it ran completed; 70 a Firework it ran failed (FIZZLED, reasons in
    'tmdflow status'); 34 one stopped at max_seconds before its first SCF iteration; 130/143
    interrupted by SIGINT/SIGTERM (the running step stays READY).
    """
    from . import api

    settings = _settings_or_fail()
    if use_queue:
        from .queue import job_script, submit_jobs

        launch_dir = (settings.work_dir / "queue").resolve()
        if dry_run:
            click.echo(job_script(qadapter, launch_dir / "launcher_DATE", max_seconds, max_launches or None))
            return
        try:
            sub = submit_jobs(settings, qadapter, njobs, launch_dir, max_seconds, max_launches or None, rapidfire,
                              sleep_seconds, say=lambda m: click.echo(m, err=True))
        except KeyboardInterrupt:  # Ctrl-C of --rapidfire: the submitted jobs go on
            click.echo("interrupted: no more jobs submitted (those in the queue go on)", err=True)
            sys.exit(130)
        if not sub.ids and not rapidfire:
            click.echo("no READY Fireworks: nothing submitted", err=True)
        click.echo(f"submitted {len(sub.ids)} job(s): {' '.join(sub.ids)}".rstrip())
        return
    progress = Progress()
    out = api.launch(max_launches, recover, expiration, max_seconds, settings, progress)
    if out["recovered"]:
        click.echo(f"marked lost runs for rerun: fw_ids {out['recovered']}", err=True)
    elif recover:
        click.echo("no lost runs found (a run of another host counts as lost after --expiration "
                   f"{expiration} s without a ping)", err=True)
    progress.done(f"launched {out['launched']} Firework(s)")
    if out["interrupted"]:
        import signal

        name = signal.Signals(out["interrupted"]).name
        click.echo(f"interrupted by {name}: fw_ids {out['requeued'] or '[]'} stay READY; 'tmdflow launch' resumes",
                   err=True)
        sys.exit(128 + out["interrupted"])
    if out["fizzled"]:
        from .errors import MaxSecondsTooShort, StepsFizzled

        names = ", ".join(f"{fw_id} ({name})" for fw_id, name, _ in out["fizzled"])
        if out["max_seconds_too_short"]:
            raise MaxSecondsTooShort(f"step(s) {names} failed: pw.x reached max_seconds before its first SCF iteration",
                                     "raise --max-seconds (or the queue walltime), then 'tmdflow rerun FW_ID'")
        raise StepsFizzled(f"{len(out['fizzled'])} step(s) failed: {names}",
                           "see the reasons in 'tmdflow status'; fix, then 'tmdflow rerun FW_ID'")


@main.command()
@click.argument("pattern")
@click.argument("rank", type=int)
def priority(pattern, rank):
    """Run the workflows whose key matches PATTERN (shell-style, e.g. '*-monolayer-*') before
    those of lower RANK (all start at 0); a material's steps keep their order."""
    from . import api

    changed = api.prioritize(pattern, rank, _settings_or_fail())
    for r in changed:
        click.echo(f"{r.key}: rank {r.rank}, {len(r.fw_ids)} step(s) still to run")


@main.command()
@click.argument("fw_ids", nargs=-1, type=int, required=True)
def rerun(fw_ids):
    """Run the steps FW_IDS (from 'tmdflow status') and every step after them again on the next
    launch, e.g. the analysis after an analysis-code update (it rereads the bands run)."""
    from . import api

    reset = api.rerun(list(fw_ids), _settings_or_fail())
    click.echo(f"will run again on the next 'tmdflow launch': fw_ids {reset}")


@main.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json):
    """Workflows and their steps with states; the reason of every failed step."""
    from . import api

    wfs = api.status(_settings_or_fail())
    if as_json:
        click.echo(api.dumps([asdict(w) for w in wfs]))
        return
    if not wfs:
        click.echo("no workflows (tmdflow submit workflows/quick.yaml)")
    for wf in wfs:
        from .identity import describe_overrides

        settings_text = f"  overrides: {describe_overrides(wf.overrides)}" if wf.overrides else ""
        click.echo(f"{wf.key}  [{wf.state}]" + (f"  rank {wf.rank}" if wf.rank else "") + settings_text)
        for fw in wf.fireworks:
            line = f"    {fw.fw_id:5d}  {fw.name:36s} {fw.state}"
            click.echo(line + (f"  -- {fw.reason}" if fw.reason else ""))
            if fw.kept:
                click.echo(f"           kept from earlier runs ({len(fw.kept)}): {', '.join(fw.kept)}")


QUERY_DERIVED_FIELDS = {
    "overrides": "the preset overrides of the result's workflow ('(legacy)' before identities)",
    "workflow": "the workflow that wrote the result",
    "settings": "the preset with its overrides, as Table I shows it",
    "gap_type": "'direct at K' or 'indirect: VBM at Gamma, CBM at Q'",
}


def _document_fields(model, prefix: str = "") -> list[str]:
    """Every (dotted) field of a pydantic model, its sub-models and dataclasses."""
    import dataclasses
    import typing

    from pydantic import BaseModel

    if dataclasses.is_dataclass(model):
        items = [(f.name, f.type) for f in dataclasses.fields(model)]
        hints = typing.get_type_hints(model)
        items = [(name, hints.get(name, t)) for name, t in items]
    else:
        items = [(name, f.annotation) for name, f in model.model_fields.items()]
    out = []
    for name, annotation in items:
        out.append(prefix + name)
        for arg in (typing.get_args(annotation) or (annotation,)):
            if isinstance(arg, type) and (issubclass(arg, BaseModel) or dataclasses.is_dataclass(arg)):
                out += _document_fields(arg, f"{prefix}{name}.")
    return out


def query_fields() -> list[str]:
    """The fields 'tmdflow query --fields' accepts: the material document's (dotted) fields and
    the derived ones of QUERY_DERIVED_FIELDS."""
    from .store.documents import MaterialDocument

    return _document_fields(MaterialDocument) + list(QUERY_DERIVED_FIELDS)


@main.command()
@click.option("--formula", help="an MX2 formula, e.g. WSe2")
@click.option("--dim", "dimensionality", type=click.Choice(["monolayer", "bulk"]))
@click.option("--preset", "preset_name")
@click.option("--calculator", help="only results of this code (espresso, wien2k, elk)")
@click.option("--fields", default="formula,dimensionality,preset,overrides,workflow,calculator,splitting.delta_vb_k_mev,"
              "splitting.delta_cb_k_mev,splitting.delta_e_gamma_k_mev,splitting.gap_ev,table1.a_angstrom,"
              "table1.d_angstrom", show_default=True,
              help="comma-separated (dotted) fields of the material document, or overrides, workflow, settings, "
                   "gap_type; an unknown field is an error (exit 2)")
@click.option("--json", "as_json", is_flag=True, help="a JSON list of objects")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with the field names as header")
def query(formula, dimensionality, preset_name, calculator, fields, as_json, as_csv):
    """Material results from the store, filtered (e.g. --formula WSe2 --dim monolayer).

    \b
    Exit status: 0 with the results, also when none match (then a note on stderr says so and
    which formulas the store holds); 2 for an unknown field, a formula that is not an MX2
    (M in Cr, Mo, W; X in S, Se, Te) or --json with --csv.
    """
    import csv as csv_mod
    import io

    from . import api

    keys = [f.strip() for f in fields.split(",") if f.strip()]
    if as_json and as_csv:
        raise InputError("--json and --csv cannot be given together", "choose one output format")
    known = query_fields()
    unknown = [k for k in keys if k not in known]
    if unknown:
        import difflib

        hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, known, 1)) else k
                 for k in unknown]
        raise InputError(f"unknown field(s) for --fields: {', '.join(hints)}",
                         "fields: " + ", ".join(known))
    if not keys:
        raise InputError("--fields names no field", "e.g. --fields formula,splitting.delta_vb_k_mev")
    if formula:
        from .materials import parse_formula

        parse_formula(formula)  # an InputError (exit 2) for a formula that is not an MX2
    settings = _settings_or_fail()
    docs = api.query(formula, dimensionality, preset_name, settings, calculator)
    if not docs:
        held = sorted({d.formula for d in api.query(settings=settings)})
        what = f"formula {formula}" if formula else "this selection"
        click.echo(f"note: no material results for {what} in the store"
                   + (f" (it holds {', '.join(held)})" if held else " (it holds none)"), err=True)

    def pick(doc, key):
        from .analysis.vocabulary import canonical_location, gap_type_of

        if key in ("overrides", "workflow"):  # from the result's identity; '(legacy)' before identities
            from .identity import describe_overrides

            if doc.identity is None:
                return "(legacy)"
            return describe_overrides(doc.identity.overrides) if key == "overrides" else doc.identity.workflow
        if key == "settings":
            return doc.settings_label
        if key == "gap_type":
            return gap_type_of(doc.splitting)
        value = doc.model_dump(mode="json")
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if key.endswith("_location") and isinstance(value, str):
            value = canonical_location(value)  # names stored by earlier versions, as named today
        return value

    rows = [{k: pick(d, k) for k in keys} for d in docs]
    if as_json:
        click.echo(api.dumps(rows))
    elif as_csv:
        buf = io.StringIO()
        w = csv_mod.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        click.echo(buf.getvalue(), nl=False)
    else:
        from .report import format_table

        fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
        click.echo(format_table([[fmt(r[k]) for k in keys] for r in rows], [k.split(".")[-1] for k in keys]))


@main.command()
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "json", "latex"]), default="markdown",
              show_default=True, help="csv/json: names with units, values rounded as the table shows them")
@click.option("--preset", "preset_name", help="only results of this preset")
@click.option("--calculator", help="only results of this code (espresso, wien2k, elk)")
@click.option("--compare", "compare_codes", metavar="CODES",
              help="e.g. espresso,elk: the monolayers' Delta_VB(K), Delta_CB(K), dE(Gamma-K) and gap of each "
                   "method of these codes side by side with the paper, each with its error bar and its source")
def table1(fmt, preset_name, calculator, compare_codes):
    """Regenerate the paper's Table I and the Delta/dE table from the store (no recomputation)."""
    from . import api

    if compare_codes is not None:
        from .compare import comparison_table

        if calculator:
            raise InputError("--calculator and --compare both given", "name the codes in --compare only")
        click.echo(comparison_table(compare_codes, fmt, preset_name, _settings_or_fail()), nl=False)
        return
    click.echo(api.table1(fmt, preset_name, _settings_or_fail(), calculator), nl=False)


@main.command()
@click.argument("result_id")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="the file to write; its name chooses the format: .cif, POSCAR or .vasp, .extxyz, .xyz, .json, "
                   ".pwi, .xsf, ... (ASE's writers, then pymatgen's)")
def structure(result_id, output):
    """Write the stored (relaxed) structure of a material result or a task to a file.

    RESULT_ID: a material_id ('tmdflow query --fields material_id') or a task_id.

    \b
    Exit status: 0 written; 4 no such result in the store; 2 a file name whose format is unknown.
    """
    from . import api

    path = api.write_structure(result_id, output, _settings_or_fail())
    click.echo(f"wrote {path}")


@main.command()
@click.option("--preset", "preset_name", help="only results of this preset")
@click.option("--calculator", help="only results of this code (espresso, wien2k, elk)")
@click.option("--format", "fmt", type=click.Choice(["html", "markdown"]), default="html", show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("tmdflow-report.html"), show_default=True)
def report(preset_name, calculator, fmt, output):
    """Write a self-contained report (tables, figures, checks, settings, provenance) from the store."""
    from .run_report import collect, write_report
    from .store.connection import connect
    from .store.results import ResultsStore

    sections = collect(ResultsStore(connect(_settings_or_fail(), readonly=True).db), preset_name, calculator)
    if not sections:
        raise InputError("no material results in the store for this selection",
                         "run a workflow first (tmdflow submit ... && tmdflow launch), or check --preset")
    if fmt == "markdown" and output.suffix == ".html":
        output = output.with_suffix(".md")
    path = write_report(sections, output, fmt, title=f"tmdflow report{f' ({preset_name})' if preset_name else ''}")
    click.echo(f"wrote {path} ({len(sections)} material result(s))")


@main.command()
@click.argument("workflow", type=click.Path(path_type=Path))
@click.option("--preset", "preset_name")
def run(workflow, preset_name):
    """Submit WORKFLOW (once), retry its failed steps, launch, and print its results from the store."""
    from . import api
    from .report import splitting_table
    from .workflow_spec import load_workflow

    settings = _settings_or_fail()
    spec = load_workflow(workflow, preset_name)
    preset = spec.load_preset(preset_name).name
    settings.check_run_directories()  # it launches here: work_dir / pseudo_dir usable, before the store
    submitted = api.submit(workflow, preset_name, settings=settings)
    from .fireworks import rerun_failed
    from .store.connection import connect

    conn = connect(settings)
    for r in submitted:  # retry what failed last time (e.g. an interrupted make run)
        rerun_failed(conn, r.fw_ids)
    conn.checkpoint()
    progress = Progress()
    out = api.launch(recover=True, expiration_secs=24 * 3600, settings=settings, progress=progress)
    progress.done(f"launched {out['launched']} Firework(s); results from {conn.description}")
    if out["interrupted"]:  # Ctrl-C / SIGTERM: the running step stays READY, no table
        import signal

        click.echo(f"interrupted by {signal.Signals(out['interrupted']).name}: 'tmdflow run {workflow}' "
                   "resumes", err=True)
        sys.exit(128 + out["interrupted"])
    from .fireworks import workflow_settings_hashes

    ours = workflow_settings_hashes(spec, preset_name)  # this workflow's results, not others' of its preset
    docs = [d for d in api.query(preset=preset, settings=settings)
            if d.identity is not None and d.identity.settings_hash in ours]
    failed = [w for w in api.status(settings) if w.state == "FIZZLED"]
    click.echo(f"\nworkflow '{spec.name}', preset '{preset}'")
    click.echo(splitting_table((f"{d.formula}" + ("" if d.dimensionality == "monolayer" else " (bulk)"), d.splitting)
                               for d in docs))
    if failed:
        click.echo(f"{len(failed)} workflow(s) failed: see 'tmdflow status'", err=True)
        sys.exit(1)


@main.group()
def db() -> None:
    """The results database: init, info, backup, restore."""


@db.command("init")
def db_init():
    """Create the database (embedded file or MongoDB) and its indexes."""
    from .store.connection import connect

    conn = connect(_settings_or_fail())
    conn.checkpoint()
    click.echo(f"ready: {conn.description}")


@db.command("info")
def db_info():
    """Where the database is (password hidden) and what it holds."""
    from . import api

    click.echo(api.dumps(api.info(_settings_or_fail())))


@db.command("launchpad-file")
@click.argument("path", type=click.Path(path_type=Path), default=Path("my_launchpad.yaml"))
def db_launchpad_file(path):
    """Write the my_launchpad.yaml FireWorks' lpad/rlaunch read (MongoDB only; no password in it)."""
    from .store.fwtools import write_launchpad_yaml

    written = write_launchpad_yaml(_settings_or_fail(), path)
    click.echo(f"wrote {written} (mode 600, no password: see the comment at its top)")


@main.command("lpad", context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def lpad_command(args):
    """FireWorks' lpad on tmdflow's database (e.g. tmdflow lpad get_wflows -d less).

    With the embedded store it runs under the store's lock and checkpoint; FireWorks' own lpad
    or rlaunch pointed at the store file are refused.  'lpad reset/init' are not offered."""
    from .store.fwtools import run_lpad

    rc = run_lpad(_settings_or_fail(), args)
    sys.exit(rc)


@db.command("backup")
@click.argument("path", type=click.Path(path_type=Path))
def db_backup(path):
    """Export every collection (LaunchPad and results) to a JSON file."""
    from . import api

    counts = api.backup(path, _settings_or_fail())
    click.echo(f"wrote {path}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@db.command("restore")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def db_restore(path):
    """Replace the database content by a backup (also repairs a damaged embedded store)."""
    from . import api

    restored = api.restore(path, _settings_or_fail())
    click.echo(f"restored from {path}: " + ", ".join(f"{k} {v}" for k, v in restored.counts.items()))
    if restored.previous is not None:
        click.echo(f"the content it replaced is kept in {restored.previous}")


if __name__ == "__main__":
    main()
