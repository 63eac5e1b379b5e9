"""Generated-pseudopotential cache and user-supplied pseudopotential directories.

Cache layout (``Settings.pseudo_dir``)::

    <pseudo_dir>/<family>/<El>.rel1.UPF        scalar-relativistic (ld1.x rel=1)
    <pseudo_dir>/<family>/<El>.rel2.UPF        fully relativistic (ld1.x rel=2)
    <pseudo_dir>/<family>/manifest.json        sha256, recipe fingerprint, ld1.x version, checks

A file is regenerated only when its recipe fingerprint changes or its checksum no longer
matches (a damaged file).  Files are written to a temporary name and renamed into place, and a
lock file serialises concurrent generation, so a crash never leaves a half-written UPF in use.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from ..errors import InputError, PseudopotentialError, TmdflowError
from .ld1 import (
    SpinOrbitSplitting,
    count_poles,
    ld1_version,
    parse_eigenvalue_tests,
    read_logder,
    run_ld1,
    spin_orbit_splittings,
)
from .recipes import REL_FULL, REL_SCALAR, Recipe, load_family, render_ld1_input, render_ld1_test_input
from .upf import read_upf_header, rewrap_long_lines

#: log-derivative window above the deepest valence level, Ry
LOGDER_WINDOW_RY = (-1.0, 2.5)
LOGDER_STEP_RY = 0.005
#: bumped when _validate gains a check: cached files validated by an older version are regenerated
#: (1 s each) so that every manifest entry carries every check.  2: atomic spin-orbit splittings.
VALIDATION_VERSION = 2


@dataclass(frozen=True)
class PseudoFile:
    element: str
    path: Path
    sha256: str
    fully_relativistic: bool
    pseudo_type: str
    source: str  # "generated:<family>" or "user:<dir>"
    ld1_version: str | None = None
    recipe_fingerprint: str | None = None
    checks: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


@dataclass(frozen=True)
class PseudoSet:
    """Pseudopotentials for one calculation: scalar and/or fully relativistic per element.

    ``family`` names the set (one recipe family, ``user:<dir>``, or a family with per-element
    replacements, see ``ensure_pseudopotentials_by_element``); in the last case
    ``element_families`` records each element's family (provenance: ``source_of``)."""

    family: str
    directory: Path
    scalar: dict[str, PseudoFile]
    full: dict[str, PseudoFile]
    element_families: dict[str, str] = field(default_factory=dict)

    def source_of(self, element: str) -> str:
        """The family ``element``'s files come from."""
        return self.element_families.get(element, self.family)

    def for_element(self, element: str, spin_orbit: bool) -> PseudoFile:
        table = self.full if spin_orbit else self.scalar
        if element not in table:
            kind = "fully relativistic" if spin_orbit else "scalar-relativistic"
            raise PseudopotentialError(
                f"no {kind} pseudopotential for {element} in family '{self.family}'",
                "generate it (tmdflow pseudo build) or add the file to your pseudopotential directory",
            )
        return table[element]

    @property
    def is_norm_conserving(self) -> bool:
        files = list(self.full.values()) + list(self.scalar.values())
        return bool(files) and all(f.pseudo_type == "NC" for f in files)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _atomic_write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest.")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class ConfigurationTest:
    """AE vs PS atom in one test configuration (ld1.x), as recorded in the manifest."""

    config: str
    max_eigenvalue_error_ry: float
    spin_orbit: tuple[SpinOrbitSplitting, ...]  # empty for rel=1


def test_configurations(recipe: Recipe, rel: int, gen_dir: Path, upf: Path, first_output: str | None,
                        ld1_command: str) -> list[ConfigurationTest]:
    """Run the recipe's test configurations against ``upf`` (see render_ld1_test_input for why two ways)."""
    results = []
    configs = list(recipe.test_configs) or [recipe.config]
    for i, config in enumerate(configs):
        if recipe.kind == "nc":
            text = render_ld1_test_input(recipe, rel, str(upf.resolve()), config)
            out = run_ld1(text, gen_dir / f"test{i}", ld1_command)
        elif i == 0 and first_output is not None:
            out = first_output  # the generation run itself tested configs[0]
        else:
            text = render_ld1_input(recipe, rel, "scratch.UPF", test_config=config, prefix=f"t{i}")
            out = run_ld1(text, gen_dir / f"test{i}", ld1_command)
        rows = parse_eigenvalue_tests(out)
        results.append(ConfigurationTest(
            config=config,
            max_eigenvalue_error_ry=max(abs(r.error) for r in rows),
            spin_orbit=tuple(spin_orbit_splittings(rows)) if rel == REL_FULL else (),
        ))
    return results


def _validate(recipe: Recipe, rel: int, gen_dir: Path, upf: Path, first_output: str, ld1_command: str) -> dict:
    """Transferability (AE vs PS eigenvalues and spin-orbit splittings) and ghost-state checks."""
    tests = test_configurations(recipe, rel, gen_dir, upf, first_output, ld1_command)
    per_config = {t.config: t.max_eigenvalue_error_ry for t in tests}
    tolerance = recipe.max_eigenvalue_error_ry  # per family, with its reason, in the recipe file
    bad = {c: e for c, e in per_config.items() if e > tolerance}
    if bad:
        raise PseudopotentialError(
            f"{recipe.element} (rel={rel}) fails transferability: |E_AE-E_PS| (Ry) {bad} "
            f"> {tolerance}",
            f"fix the recipe in inputs/pseudo_recipes/{recipe.family}.yaml; ld1 output in {gen_dir}",
        )
    bad_so = {
        f"{t.config}: {s.label}": f"AE {s.ae_mev:.1f} vs PS {s.ps_mev:.1f} meV"
        for t in tests for s in t.spin_orbit if abs(s.error_mev) > recipe.spin_orbit_tolerance_mev(s.ae_mev)
    }
    if bad_so:
        raise PseudopotentialError(
            f"{recipe.element} (rel={rel}) misses all-electron spin-orbit splittings by more than "
            f"max({recipe.spin_orbit_error_floor_mev:g} meV, {recipe.max_spin_orbit_relative_error:.1%}): {bad_so}",
            f"fix the recipe in inputs/pseudo_recipes/{recipe.family}.yaml; ld1 output in {gen_dir}",
        )
    ae = read_logder(gen_dir / "ld1.dlog")
    ps = read_logder(gen_dir / "ld1ps.dlog")
    poles_ae = [count_poles(ae[:, i]) for i in range(1, ae.shape[1])]
    poles_ps = [count_poles(ps[:, i]) for i in range(1, ps.shape[1])]
    ghosts = [l for l, (a, p) in enumerate(zip(poles_ae, poles_ps)) if p > a]
    if ghosts:
        raise PseudopotentialError(
            f"{recipe.element} (rel={rel}): ghost state suspected for l={ghosts} "
            f"(log-derivative poles AE {poles_ae} vs PS {poles_ps})",
            f"fix the recipe in inputs/pseudo_recipes/{recipe.family}.yaml; files in {gen_dir}",
        )
    checks = {
        "validation_version": VALIDATION_VERSION,
        "max_eigenvalue_error_ry": per_config,
        "logder_poles_ae": poles_ae,
        "logder_poles_ps": poles_ps,
    }
    if rel == REL_FULL:
        checks["spin_orbit_splittings_mev"] = {
            t.config: {s.label: [round(s.ae_mev, 2), round(s.ps_mev, 2)] for s in t.spin_orbit} for t in tests
        }
    return checks


def _logder_settings(recipe: Recipe, deepest_level_ry: float) -> dict:
    """ld1.x &input keys for log-derivatives just outside the core radii, over the valence window."""
    return {
        "rlderiv": round(recipe.max_radius() + 0.4, 2),
        "eminld": round(deepest_level_ry + LOGDER_WINDOW_RY[0], 2),
        "emaxld": LOGDER_WINDOW_RY[1],
        "deld": LOGDER_STEP_RY,
        "nld": 3,
    }


def generate_one(recipe: Recipe, rel: int, target: Path, ld1_command: str = "ld1.x") -> PseudoFile:
    """Generate, re-wrap and validate one UPF file; move it to ``target`` only when valid."""
    tag = f"{recipe.element}.rel{rel}"
    gen_dir = Path(tempfile.mkdtemp(prefix=f"ld1-{tag}-", dir=target.parent))
    try:
        # first pass without log-derivatives to learn the deepest valence eigenvalue
        probe = run_ld1(render_ld1_input(recipe, rel, "probe.UPF"), gen_dir / "probe", ld1_command)
        deepest = min(r.e_ae for r in parse_eigenvalue_tests(probe))
        logder = _logder_settings(recipe, deepest)
        first_test = recipe.test_configs[0] if recipe.test_configs else None
        text = render_ld1_input(recipe, rel, f"{tag}.UPF", test_config=first_test, logder=logder)
        output = run_ld1(text, gen_dir, ld1_command)
        upf = gen_dir / f"{tag}.UPF"
        rewrapped = rewrap_long_lines(upf)
        checks = _validate(recipe, rel, gen_dir, upf, output, ld1_command)
        checks["rewrapped_lines"] = rewrapped
        header = read_upf_header(upf)
        if header.fully_relativistic != (rel == REL_FULL):
            raise PseudopotentialError(
                f"{tag}: ld1.x wrote relativistic='{header.relativistic}' for rel={rel}",
                "check the ld1.x build",
            )
        os.replace(upf, target)
        (target.parent / f"{tag}.ld1.out").write_text(output)
    except TmdflowError:
        raise  # gen_dir is kept: the messages point at ld1.x's input and output in it
    except BaseException:
        shutil.rmtree(gen_dir, ignore_errors=True)
        raise
    shutil.rmtree(gen_dir, ignore_errors=True)
    return PseudoFile(
        element=recipe.element,
        path=target,
        sha256=sha256_of(target),
        fully_relativistic=header.fully_relativistic,
        pseudo_type=header.pseudo_type,
        source=f"generated:{recipe.family}",
        ld1_version=ld1_version(output),
        recipe_fingerprint=recipe.fingerprint(rel),
        checks=checks,
    )


def _from_manifest(entry: dict) -> PseudoFile:
    entry = dict(entry)
    entry["path"] = Path(entry["path"])
    return PseudoFile(**entry)


def ensure_pseudopotentials(
    elements: Iterable[str],
    family: str,
    pseudo_dir: Path,
    rels: Iterable[int] = (REL_SCALAR, REL_FULL),
    ld1_command: str = "ld1.x",
    progress=None,
) -> PseudoSet:
    """Return validated pseudopotentials for ``elements``, generating only what is missing/stale."""
    recipes = load_family(family)
    elements = sorted(set(elements))
    missing = [e for e in elements if e not in recipes]
    if missing:
        raise PseudopotentialError(
            f"family '{family}' has no recipe for {missing}",
            f"available: {sorted(recipes)}; add a recipe or use --pseudo-dir",
        )
    directory = Path(pseudo_dir).expanduser() / family
    with _locked(directory):
        manifest_path = directory / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        tables: dict[int, dict[str, PseudoFile]] = {REL_SCALAR: {}, REL_FULL: {}}
        for element in elements:
            for rel in rels:
                key = f"{element}.rel{rel}"
                target = directory / f"{key}.UPF"
                entry = manifest.get(key)
                fresh = (
                    entry is not None
                    and entry.get("recipe_fingerprint") == recipes[element].fingerprint(rel)
                    and target.is_file()
                    and sha256_of(target) == entry.get("sha256")
                    and entry.get("checks", {}).get("validation_version") == VALIDATION_VERSION
                )
                if fresh:
                    pf = _from_manifest({**entry, "path": str(target)})
                else:
                    if progress:
                        progress(f"generating {key} with ld1.x ({family})")
                    pf = generate_one(recipes[element], rel, target, ld1_command)
                    manifest[key] = pf.to_json()
                    _atomic_write_json(manifest_path, manifest)
                tables[rel][element] = pf
    return PseudoSet(family=family, directory=directory, scalar=tables[REL_SCALAR], full=tables[REL_FULL])


def ensure_pseudopotentials_by_element(
    elements: Iterable[str],
    family: str,
    replacements: Mapping[str, str],
    pseudo_dir: Path,
    rels: Iterable[int] = (REL_SCALAR, REL_FULL),
    ld1_command: str = "ld1.x",
    progress=None,
) -> PseudoSet:
    """Validated pseudopotentials for ``elements`` from ``family``, except those named in
    ``replacements`` (element -> family), e.g. family "pslibrary-paw" with
    {"Se": "pslibrary-1.0.0-paw"}.

    Each family keeps its own cache directory and manifest.  The set is named after ``family``
    with the replacements this material uses, e.g. ``pslibrary-paw+Se:pslibrary-1.0.0-paw``, and
    plainly ``family`` when it uses none.  Families are resolved one at a time, so an error names
    the family at fault."""
    elements = sorted(set(elements))
    used = {el: replacements[el] for el in elements if el in replacements and replacements[el] != family}
    by_family: dict[str, list[str]] = {family: [el for el in elements if el not in used]}
    for el, f in used.items():
        by_family.setdefault(f, []).append(el)
    sets = [ensure_pseudopotentials(els, f, pseudo_dir, rels=rels, ld1_command=ld1_command, progress=progress)
            for f, els in by_family.items() if els]
    if not used:
        return sets[0]
    return PseudoSet(family=family + "".join(f"+{el}:{f}" for el, f in used.items()),
                     directory=Path(pseudo_dir).expanduser() / family,
                     scalar={el: pf for s in sets for el, pf in s.scalar.items()},
                     full={el: pf for s in sets for el, pf in s.full.items()},
                     element_families={el: used.get(el, family) for el in elements})


def _element_of_filename(name: str) -> str:
    head = ""
    for ch in name:
        if ch.isalpha() and (not head or ch.islower()) and len(head) < 2:
            head += ch
        else:
            break
    return head


def user_pseudopotentials(directory: Path, elements: Iterable[str], spin_orbit: bool) -> PseudoSet:
    """Pick one UPF per element from a user directory and check it fits the step.

    For a spin-orbit step every file must be fully relativistic; otherwise the error names the
    offending file and asks for a fully relativistic set (e.g. PseudoDojo FR, SG15 FR).
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise InputError(f"pseudopotential directory {directory} does not exist", "check --pseudo-dir")
    chosen: dict[str, PseudoFile] = {}
    for element in sorted(set(elements)):
        candidates = sorted(
            p for p in directory.iterdir()
            if p.suffix.lower() == ".upf" and _element_of_filename(p.name).lower() == element.lower()
        )
        if not candidates:
            raise PseudopotentialError(
                f"no UPF file for {element} in {directory}",
                f"add e.g. {element}.upf (file names must start with the element symbol)",
            )
        matches = []
        for path in candidates:
            header = read_upf_header(path)
            if header.element.strip().lower() == element.lower() and header.fully_relativistic == spin_orbit:
                matches.append((path, header))
        if not matches:
            kind = "fully relativistic (has_so / relativistic=\"full\")" if spin_orbit else "scalar-relativistic"
            raise PseudopotentialError(
                f"{element}: {', '.join(p.name for p in candidates)} in {directory} "
                f"is not {kind}, as a {'spin-orbit' if spin_orbit else 'scalar-relativistic'} step needs",
                "use a fully relativistic set for spin-orbit steps (e.g. PseudoDojo FR, SG15 FR)"
                if spin_orbit else "supply a scalar-relativistic file, or a norm-conserving FR one",
            )
        path, header = matches[0]
        chosen[element] = PseudoFile(
            element=element, path=path, sha256=sha256_of(path),
            fully_relativistic=header.fully_relativistic, pseudo_type=header.pseudo_type,
            source=f"user:{directory}",
        )
    empty: dict[str, PseudoFile] = {}
    return PseudoSet(
        family=f"user:{directory.name}", directory=directory,
        scalar=empty if spin_orbit else chosen, full=chosen if spin_orbit else empty,
    )
