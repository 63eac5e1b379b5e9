"""Analyse a spin-orbit pw.x run made by hand: a directory, an XML file, or a pw.x text output."""

from __future__ import annotations

from pathlib import Path

from .analysis.splitting import SplittingResult, analyze_bands
from .bands import BandData
from .calculators.espresso.parsers import (parse_bandsx_sigma_inplane, parse_bandsx_sigma_z, parse_pw_stdout,
                                          parse_pw_xml)
from .errors import AnalysisError, OutputParseError, TmdflowError


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


def _candidates(path: Path) -> list[tuple[str, BandData]]:
    """(description, bands) from every pw.x XML / text output found at ``path``."""
    files: list[Path]
    if path.is_file():
        files = [path]
    elif path.is_dir():
        xmls = sorted(path.rglob("data-file-schema.xml")) + sorted(
            p for p in path.glob("*.xml") if _is_pw_xml(p)
        )
        texts = sorted(p for p in path.iterdir() if p.is_file() and p.suffix not in (".xml", ".UPF", ".upf")
                       and p.stat().st_size < 50_000_000 and _is_pw_stdout(p))
        files = xmls + texts
    else:
        raise OutputParseError(f"{path} does not exist", "pass a run directory, an XML file or a pw.x output")
    found = []
    for f in files:
        try:
            if f.suffix == ".xml":
                found.append((str(f), parse_pw_xml(f).bands))
            else:
                parsed = parse_pw_stdout(f)
                if parsed.bands is not None:
                    found.append((str(f), parsed.bands))
        except TmdflowError:
            continue
    if not found:
        raise OutputParseError(
            f"no readable pw.x output in {path}",
            "pass <prefix>.save/data-file-schema.xml or a pw.x stdout written with verbosity='high'",
        )
    return found


def _attach_spin(directory: Path, bands: BandData) -> BandData:
    for sigma in sorted(directory.glob("*.3")):
        filband = sigma.with_suffix("")
        try:
            return bands.with_sigma_z(parse_bandsx_sigma_z(filband, bands.eigenvalues),
                                      parse_bandsx_sigma_inplane(filband, bands.eigenvalues))
        except TmdflowError:
            continue
    return bands


def analyze_path(path: Path) -> tuple[str, SplittingResult]:
    """Pick the spin-orbit band set that contains Gamma and K and analyse it."""
    path = Path(path)
    candidates = [(name, b) for name, b in _candidates(path) if b.spinor]
    if not candidates:
        raise AnalysisError(
            f"no spin-orbit (noncollinear) pw.x result in {path}",
            "analyse a run with noncolin=.true. and lspinorb=.true.",
        )
    errors = []
    for name, bands in candidates:
        try:
            directory = path if path.is_dir() else path.parent
            return name, analyze_bands(_attach_spin(directory, bands))
        except AnalysisError as exc:
            errors.append(f"{Path(name).name}: {exc.problem}")
    raise AnalysisError(
        "no spin-orbit result here can be analysed: " + "; ".join(errors),
        "run pw.x (calculation='bands') on a k list containing Gamma and K = (1/3, 1/3, 0)",
    )
