"""Analyse a spin-orbit pw.x run made by hand: a directory, an XML file, or a pw.x text output.

What is refused, and how (docs/user-guide.md, section 4):

- a result whose SCF did not converge: :class:`ScfNotConverged` (exit 31), unless the caller
  passes ``allow_unconverged=True``, and then the result says so (``scf_converged`` False,
  ``warning``).  The SCF is the analysed run itself when it is an SCF (or relax: its last SCF),
  else (a bands/nscf run) an SCF output in the same directory;
- output that cannot be read: the parser's own error (class, exit code, problem and remedy) is
  raised, not a generic "nothing readable" (several files: every file's reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .analysis.splitting import SplittingResult, analyze_bands
from .bands import BandData
from .calculators.espresso.parsers import (parse_bandsx_sigma_inplane, parse_bandsx_sigma_z, parse_pw_stdout,
                                          parse_pw_xml)
from .errors import AnalysisError, OutputParseError, ScfNotConverged, TmdflowError


@dataclass(frozen=True)
class _Read:
    """One pw.x output file as the analysis sees it."""

    path: Path
    bands: BandData | None
    converged: bool | None  # of the file's (last) SCF; None for a non-SCF run
    resumable: bool  # stopped at max_seconds (a checkpoint to resume from, not a final answer)


@dataclass(frozen=True)
class AnalyzedRun:
    source: str  # the file whose band data were analysed
    result: SplittingResult
    scf_converged: bool | None  # of the SCF behind the analysed bands; None when no SCF output was found
    scf_source: str | None  # the output that told
    warning: str | None  # set when an unconverged SCF was analysed because the caller allowed it


def _is_pw_xml(path: Path) -> bool:
    try:
        with open(path, errors="replace") as fh:
            head = fh.read(2000)
    except OSError:
        return False
    return "espresso" in head and "<" in head


def _is_pw_stdout(path: Path) -> bool:
    try:
        with open(path, errors="replace") as fh:
            return "Program PWSCF" in fh.read(4000)
    except OSError:
        return False


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        xmls = sorted(path.rglob("data-file-schema.xml")) + sorted(
            p for p in path.glob("*.xml") if _is_pw_xml(p)
        )
        texts = sorted(p for p in path.iterdir() if p.is_file() and p.suffix not in (".xml", ".UPF", ".upf")
                       and p.stat().st_size < 50_000_000 and _is_pw_stdout(p))
        return xmls + texts
    raise OutputParseError(f"{path} does not exist", "pass a run directory, an XML file or a pw.x output")


def _read(f: Path) -> _Read:
    if f.suffix == ".xml":
        xml = parse_pw_xml(f)
        return _Read(f, xml.bands, xml.converged, False)
    out = parse_pw_stdout(f)
    return _Read(f, out.bands, out.converged, out.walltime_exceeded)


def _unreadable(path: Path, failures: list[tuple[Path, TmdflowError]]) -> TmdflowError:
    """The parsers' own reasons, kept: one file -> its error as raised; several -> one error of
    their common class (OutputParseError if they differ) naming each file's problem."""
    if len(failures) == 1:
        return failures[0][1]
    classes = {type(exc) for _, exc in failures}
    cls = classes.pop() if len(classes) == 1 else OutputParseError
    problem = f"no pw.x output in {path} can be read: " + "; ".join(
        exc.problem if str(f) in exc.problem else f"{f.name}: {exc.problem}" for f, exc in failures)
    return cls(problem, failures[0][1].remedy)


def _read_all(path: Path) -> tuple[list[_Read], list[tuple[Path, TmdflowError]]]:
    files = _files(path)
    if not files:
        raise OutputParseError(
            f"no pw.x output in {path} (no data-file-schema.xml, no pw.x XML, no file with the 'Program PWSCF' banner)",
            "pass <prefix>.save/data-file-schema.xml or a pw.x stdout written with verbosity='high'",
        )
    read, failures = [], []
    for f in files:
        try:
            read.append(_read(f))
        except TmdflowError as exc:
            failures.append((f, exc))
    if not read:
        raise _unreadable(path, failures)
    if not any(r.bands is not None for r in read):
        stopped = [r for r in read if r.converged is False]
        if stopped:  # pw.x prints no eigenvalues after an SCF that stopped unconverged
            raise ScfNotConverged(
                f"the SCF of {stopped[0].path} did not converge, and pw.x printed no eigenvalues after it",
                "rerun pw.x with a larger electron_maxstep and/or a smaller mixing_beta until it prints "
                "'convergence has been achieved'",
            )
        names = ", ".join(r.path.name for r in read)
        raise OutputParseError(
            f"no eigenvalues in {names}" + (f" (not read: {_unreadable(path, failures).problem})" if failures else ""),
            "pass <prefix>.save/data-file-schema.xml or a pw.x stdout written with verbosity='high'",
        )
    return read, failures


def _attach_spin(directory: Path, bands: BandData) -> BandData:
    for sigma in sorted(directory.glob("*.3")):
        filband = sigma.with_suffix("")
        try:
            return bands.with_sigma_z(parse_bandsx_sigma_z(filband, bands.eigenvalues),
                                      parse_bandsx_sigma_inplane(filband, bands.eigenvalues))
        except TmdflowError:
            continue
    return bands


def _scf_behind(chosen: _Read, read: list[_Read]) -> tuple[bool | None, Path | None]:
    """Convergence of the SCF the chosen bands come from: the chosen run's own (last) SCF, else
    (bands/nscf) the other SCF outputs that were read with it (the same directory) -- any one
    unconverged makes the density suspect; runs stopped at max_seconds are checkpoints, not
    answers, and are left out."""
    if chosen.converged is not None:
        return chosen.converged, chosen.path
    beside = [r for r in read if r is not chosen and r.converged is not None and not r.resumable]
    bad = [r for r in beside if r.converged is False]
    if bad:
        return False, bad[0].path
    return (True, beside[0].path) if beside else (None, None)


def analyze_path(path: Path, allow_unconverged: bool = False) -> AnalyzedRun:
    """Pick the spin-orbit band set that contains Gamma and K and analyse it; refuse it when the
    SCF behind it did not converge, unless ``allow_unconverged``."""
    path = Path(path)
    read, failures = _read_all(path)
    candidates = [r for r in read if r.bands is not None and r.bands.spinor]
    if not candidates:
        not_read = f" (not read: {_unreadable(path, failures).problem})" if failures else ""
        raise AnalysisError(
            f"no spin-orbit (noncollinear) pw.x result in {path}{not_read}",
            "analyse a run with noncolin=.true. and lspinorb=.true.",
        )
    errors = []
    for chosen in candidates:
        try:
            directory = path if path.is_dir() else path.parent
            result = analyze_bands(_attach_spin(directory, chosen.bands))
        except AnalysisError as exc:
            errors.append(f"{chosen.path.name}: {exc.problem}")
            continue
        converged, scf_file = _scf_behind(chosen, read)
        warning = None
        if converged is False:
            problem = (f"the SCF of {scf_file} did not converge (its estimated accuracy stayed above conv_thr), "
                       f"so the band energies of {chosen.path.name} are not self-consistent")
            if not allow_unconverged:
                raise ScfNotConverged(
                    problem,
                    "rerun pw.x with a larger electron_maxstep and/or a smaller mixing_beta until it prints "
                    "'convergence has been achieved'; or pass --allow-unconverged to see the numbers anyway, "
                    "labelled unconverged",
                )
            warning = problem + "; shown because of --allow-unconverged"
        return AnalyzedRun(str(chosen.path), result, converged, str(scf_file) if scf_file else None, warning)
    raise AnalysisError(
        "no spin-orbit result here can be analysed: " + "; ".join(errors),
        "run pw.x (calculation='bands') on a k list containing Gamma and K = (1/3, 1/3, 0)",
    )
