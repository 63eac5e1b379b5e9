"""The package's structural rules (issue 23), checked statically over every module of tmdflow.

1. No import cycle between tmdflow modules.  Every ``import``/``from ... import`` counts, also the
   ones inside functions and under ``if TYPE_CHECKING:`` (a function-level import hides a cycle from
   Python, not from the design).  ``from pkg import name`` is an edge to ``pkg.name`` when that is a
   module, else to ``pkg`` (its ``__init__``).  A package's ``__init__`` re-exporting its submodules
   is an edge ``pkg -> pkg.sub``.  Importing ``pkg.sub`` from outside ``pkg`` runs ``pkg/__init__``
   first, so it is an edge to ``pkg`` too; a module's own parent packages are loaded before it, so
   they are no edge of its own, nor is reading only an ancestor package's dunder attributes
   (``from . import __version__``, ``package.__path__``).  A submodule that takes a *name* from its
   package's ``__init__`` is an edge like any other, so a re-export plus such a use is a cycle.
2. No private name used across modules: ``from x import _name`` and ``x._name`` (``x`` a tmdflow
   module other than the importer) are errors; a module's own privates and dunder names are fine.
3. No step name (taken from tmdflow.steps.registry at test time) in a string constant outside its
   own step module (tmdflow/steps/<name>.py) and the registry.  Docstrings and comments may mention
   steps, and so may prose (a constant with whitespace in it: messages, help texts, where naming the
   step is the point); a constant without whitespace is a key, a file name or an id piece, and must
   not contain a step name as a word (``"bands_soc"``, the f-string piece ``"-bands_soc"``,
   ``"bands_sr.out"``; ``"relax_rungs"`` is another word).
4. Adding a step is one new module: a temporary step module found by the registry is accepted by
   the workflow schema in its order, prioritised by the FireWorks edge, kept off bulk chains when it
   is monolayer-only, supported by exactly the calculators whose capabilities cover it.

The rules hold for every module, without exceptions.  Only words of other vocabularies that equal
a step name are listed (``OTHER_VOCABULARIES``, each with its reason); an entry that no longer
occurs fails ``test_other_vocabularies_are_current``, so the list holds only what is still needed.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import tmdflow

#: words of other vocabularies that happen to equal a step name: not step names (module, constant) -> why
OTHER_VOCABULARIES: dict[tuple[str, str], str] = {
    ("tmdflow.store.results", "figures"): "a collection name (existing stores)",
    ("tmdflow.store.results", "phonons"): "a collection name (existing stores)",
    ("tmdflow.store.backup", "figures"): "a collection name in backups (existing backups)",
    ("tmdflow.store.backup", "phonons"): "a collection name in backups (existing backups)",
    ("tmdflow.store.documents", "soc_map"): "a BandStructureDoc.kind value (existing documents)",
    ("tmdflow.phonons", "phonons"): "the dispersion figure's file stem (existing run directories, reports)",
    ("tmdflow.calculators.espresso.pwinput", "relax"): "pw.x's calculation = 'relax'",
    ("tmdflow.calculators.espresso.pwinput", "vc-relax"): "pw.x's calculation = 'vc-relax'",
    ("tmdflow.calculators.espresso.parsers.xml", "relax"): "pw.x's calculation = 'relax'",
    ("tmdflow.calculators.espresso.parsers.xml", "vc-relax"): "pw.x's calculation = 'vc-relax'",
}


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _private(name: str) -> bool:
    return name.startswith("_") and not _dunder(name)


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


@dataclass(frozen=True)
class Use:
    """One module's use of another module of the package."""

    importer: str
    target: str  # the module depended on
    names: tuple[str, ...]  # names taken from it (the attributes read, for a module object)
    line: int


def _attributes_read(tree: ast.Module, base: str) -> list[str]:
    """Attributes read through a name or dotted module path (``x.y``, ``tmdflow.x.y``)."""
    return [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
            and isinstance(n.value, (ast.Name, ast.Attribute)) and ast.unparse(n.value) == base]


def _docstrings(tree: ast.Module) -> set[int]:
    """Bare string statements: docstrings of modules, classes, functions, attributes."""
    return {id(n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)}


class Package:
    """The modules of a package directory, parsed (nothing is imported)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.trees = {self._name(p): (p, ast.parse(p.read_text(), filename=str(p)))
                      for p in sorted(directory.rglob("*.py"))}
        self.uses = [u for m in self.trees for u in self._uses(m)]

    def _name(self, path: Path) -> str:
        parts = list(path.relative_to(self.directory.parent).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def _resolve(self, module: str, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = module if self.trees[module][0].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        return f"{package}.{node.module}" if node.module else package

    def _uses(self, module: str) -> list[Use]:
        tree = self.trees[module][1]
        uses = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in self.trees:
                        read = _attributes_read(tree, a.asname or a.name)
                        uses.append(Use(module, a.name, tuple(read) or ("*",), node.lineno))
            elif isinstance(node, ast.ImportFrom):
                source = self._resolve(module, node)
                if source not in self.trees:
                    continue
                for a in node.names:
                    if f"{source}.{a.name}" in self.trees:  # a module object: its attributes are what is used
                        read = _attributes_read(tree, a.asname or a.name)
                        uses.append(Use(module, f"{source}.{a.name}", tuple(read) or ("*",), node.lineno))
                    else:
                        uses.append(Use(module, source, (a.name,), node.lineno))
        return uses

    @staticmethod
    def is_edge(use: Use) -> bool:
        if use.target == use.importer:
            return False
        # an ancestor package is loaded before the importer; reading only its dunders adds no dependency
        return not (use.target in _ancestors(use.importer) and all(_dunder(n) for n in use.names))

    def graph(self) -> dict[str, set[str]]:
        graph: dict[str, set[str]] = {m: set() for m in self.trees}
        for use in self.uses:
            if self.is_edge(use):
                graph[use.importer].add(use.target)
                # importing pkg.sub from outside pkg runs pkg/__init__ first: a dependency on it too
                graph[use.importer] |= _ancestors(use.target) - _ancestors(use.importer) - {use.importer}
        return graph

    def cycles(self) -> dict[frozenset[str], str]:
        """Each strongly connected component of the import graph, with one cycle through it spelled out."""
        graph = self.graph()
        found = {}
        for component in strongly_connected(graph):
            cycle = a_cycle(graph, component)
            hops = "\n    ".join(self._where(a, b) for a, b in zip(cycle, cycle[1:]))
            found[frozenset(component)] = f"{' -> '.join(cycle)}\n    {hops}"
        return found

    def _where(self, importer: str, target: str) -> str:
        direct = sorted({u.line for u in self.uses if u.importer == importer and u.target == target and self.is_edge(u)})
        if direct:
            return f"{importer} -> {target} (line {', '.join(map(str, direct))})"
        via = sorted({(u.line, u.target) for u in self.uses if u.importer == importer and self.is_edge(u)
                      and u.target.startswith(target + ".")})
        return f"{importer} -> {target} (its __init__, importing " + \
            ", ".join(f"{t} at line {line}" for line, t in via) + ")"

    def private_uses(self) -> dict[tuple[str, str, str], int]:
        found: dict[tuple[str, str, str], int] = {}
        for use in self.uses:
            if use.target != use.importer:
                for name in use.names:
                    if _private(name):
                        found.setdefault((use.importer, use.target, name), use.line)
        return found

    def string_constants(self, module: str) -> list[tuple[str, int]]:
        """The module's string constants that are code, not documentation (f-string pieces included)."""
        tree = self.trees[module][1]
        docs = _docstrings(tree)
        return [(n.value, n.lineno) for n in ast.walk(tree)
                if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]

    def step_name_constants(self, steps: tuple[str, ...]) -> dict[tuple[str, str], tuple[str, int]]:
        """(module, constant) -> (the step it names, line), outside the step's own module and the registry."""
        package = self.directory.name
        patterns = {s: re.compile(rf"(?<![A-Za-z0-9_]){re.escape(s)}(?![A-Za-z0-9_])") for s in steps}
        found: dict[tuple[str, str], tuple[str, int]] = {}
        for module in self.trees:
            for text, line in self.string_constants(module):
                if re.search(r"\s", text):
                    continue  # prose: a message or a help text may name a step
                for step, pattern in patterns.items():
                    own = {f"{package}.steps.{step}", f"{package}.steps.registry"}
                    if module not in own and pattern.search(text):
                        found.setdefault((module, text), (step, line))
        return found


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components of more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)

    for root in sorted(graph):
        if root in index:
            continue
        visit(root)
        work = [(root, iter(sorted(graph[root])))]
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    visit(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    result.append(sorted(component))
    return result


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle from the component's first module back to it."""
    members, start = set(component), component[0]
    path, seen = [start], {start}

    def walk(node: str) -> bool:
        for child in sorted(graph[node] & members):
            if child == start:
                return True
            if child not in seen:
                seen.add(child)
                path.append(child)
                if walk(child):
                    return True
                path.pop()
        return False

    walk(start)
    return [*path, start]


TMDFLOW = Package(Path(tmdflow.__file__).parent)


def step_names() -> tuple[str, ...]:
    from tmdflow.steps import registry

    return registry.names()


# --- the rules -------------------------------------------------------------------------------------

def test_no_import_cycle():
    found = TMDFLOW.cycles()
    assert not found, "import cycles between tmdflow modules:\n  " + "\n  ".join(found.values())


def test_no_private_name_across_modules():
    found = TMDFLOW.private_uses()
    assert not found, "private names used across modules:\n  " + "\n  ".join(
        f"{importer}:{line} uses {target}.{name}" for (importer, target, name), line in sorted(found.items()))


def test_no_step_name_outside_its_module_and_the_registry():
    found = {k: v for k, v in TMDFLOW.step_name_constants(step_names()).items()
             if k not in OTHER_VOCABULARIES}
    assert not found, "step names spelled outside their module and the registry (derive them from " \
        "tmdflow.steps.registry):\n  " + "\n  ".join(f"{module}:{line} {text!r} names step {step}"
                                                     for (module, text), (step, line) in sorted(found.items()))


def test_other_vocabularies_are_current():
    """Each listed word of another vocabulary still occurs where it is listed (remove the gone ones)."""
    stale = set(OTHER_VOCABULARIES) - set(TMDFLOW.step_name_constants(step_names()))
    assert not stale, f"no longer spelled there, remove from OTHER_VOCABULARIES in tests/test_architecture.py: {stale}"


def test_the_checks_catch_violations(tmp_path):
    """On a made-up package: a cycle hidden in a function, a private import, a step-name id piece are
    found; a docstring, prose, an ancestor's dunders and a package re-exporting its module are not."""
    pkg = tmp_path / "tmdflow"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "__version__ = '1'\n",
        "a.py": '"""Runs bands_soc."""\n\ndef f():\n    from .b import g\n    return g() + f"{1}-bands_soc"\n',
        "b.py": "from . import __version__\nfrom .a import f, _hidden\n\n\ndef g():\n"
                "    raise ValueError('run the bands_soc step first')\n",
        "sub/__init__.py": "from .c import h\n",
        "sub/c.py": "from .. import sub as package\nimport tmdflow.a\n\n\ndef h():\n"
                    "    return package.__path__, tmdflow.a._hidden\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    made_up = Package(pkg)
    assert list(made_up.cycles()) == [frozenset({"tmdflow.a", "tmdflow.b"})]
    assert "tmdflow.a -> tmdflow.b (line 4)" in made_up.cycles()[frozenset({"tmdflow.a", "tmdflow.b"})]
    assert set(made_up.private_uses()) == {("tmdflow.b", "tmdflow.a", "_hidden"),
                                           ("tmdflow.sub.c", "tmdflow.a", "_hidden")}
    assert set(made_up.step_name_constants(("bands_soc", "relax"))) == {("tmdflow.a", "-bands_soc")}
    assert "tmdflow.sub.c" in made_up.graph()["tmdflow.sub"]
    assert "tmdflow.sub" not in made_up.graph()["tmdflow.sub.c"]
    (pkg / "b.py").write_text("from .sub.c import h\n")  # runs sub/__init__ first: an edge to it
    assert Package(pkg).graph()["tmdflow.b"] == {"tmdflow.sub", "tmdflow.sub.c"}
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_checks_see_the_package():
    assert {"tmdflow.cli", "tmdflow.steps.registry", "tmdflow.store.results"} <= set(TMDFLOW.trees)
    assert "tmdflow.steps.registry" in TMDFLOW.graph()["tmdflow.steps"]  # steps/__init__ re-exports it
    assert len(step_names()) >= 9 and "bands_soc" in step_names()


# --- adding a step is one new module ----------------------------------------------------------------

NEW_STEP = '''"""A step that exists only in this test: one module, nothing else edited."""

from tmdflow.steps.registry import StepSpec


def run(ctx):
    raise AssertionError("planned, never run: the test checks what derives from the registry")


SPEC = StepSpec("band_census", 10, run, "counts the bands (test only)", requires=frozenset({"band_map"}),
                dimensionalities=("monolayer",), spin_orbit_modes=("scf",), needs=frozenset({"spin_orbit_bands"}))
'''


@pytest.fixture
def new_step(tmp_path, monkeypatch):
    """``band_census``: a step module outside the source tree, found by the registry like any other
    (the package's ``__path__`` is where the registry looks; ``registry.refresh()`` makes it look
    again, before the test and after it)."""
    from tmdflow import steps
    from tmdflow.steps import registry

    more = tmp_path / "more_steps"
    more.mkdir()
    (more / "band_census.py").write_text(NEW_STEP)
    monkeypatch.setattr(steps, "__path__", [*steps.__path__, str(more)])
    registry.refresh()
    yield "band_census"
    monkeypatch.undo()
    sys.modules.pop("tmdflow.steps.band_census", None)
    registry.refresh()


def _workflow(tmp_path, steps: str, calculator: str = "espresso", structures: str = "[monolayer, bulk]"):
    from tmdflow.workflow_spec import load_workflow

    f = tmp_path / "census.yaml"
    f.write_text(f"name: census\ncalculator: {calculator}\npreset: quick\nmaterials: [MoS2]\n"
                 f"structures: {structures}\nsteps: [{steps}]\n")
    return load_workflow(f)


def test_a_new_step_module_is_planned_without_editing_anything(new_step, tmp_path):
    from tmdflow.errors import InputError
    from tmdflow.fireworks import RANK_STRIDE, build_workflows, step_priority
    from tmdflow.steps import registry

    assert registry.names()[-1] == new_step and registry.index(new_step) == 10
    # the calculators' support: exactly the codes whose capabilities cover what it requires
    assert new_step in registry.for_calculator("espresso")
    assert new_step not in registry.for_calculator("wien2k") and new_step not in registry.for_calculator("elk")
    # the workflow schema: its name in its order, what it needs before it
    spec = _workflow(tmp_path, f"scf_soc, bands_soc, analysis, {new_step}")
    assert spec.steps[-1] == new_step
    with pytest.raises(InputError, match="steps must keep the order"):
        _workflow(tmp_path, f"scf_soc, bands_soc, analysis, {new_step}, phonons")
    with pytest.raises(InputError, match=f"{new_step} needs bands_soc before it"):
        _workflow(tmp_path, f"scf_soc, {new_step}")
    # a code that cannot run it leaves it out of the submitted chain (like any optional step)
    assert _workflow(tmp_path, f"scf_soc, bands_soc, analysis, {new_step}", "wien2k").skipped_steps() == [new_step]
    # FireWorks: its priority from its order; monolayer-only, so off the bulk chain
    assert step_priority(new_step, 2) == 2 * RANK_STRIDE + 10 > step_priority("phonons", 2)
    chains = {wf.metadata["dimensionality"]: sorted(wf.fws, key=lambda fw: -fw.fw_id) for wf in build_workflows(spec)}
    assert [fw.name for fw in chains["monolayer"]][-1] == f"MoS2-monolayer-{new_step}"
    assert chains["monolayer"][-1].spec["_priority"] == step_priority(new_step)
    assert not [fw for fw in chains["bulk"] if fw.tasks[0]["step"] == new_step]
    assert chains["bulk"][-1].tasks[0]["step"] == "analysis"


def test_the_new_step_is_gone_after_the_test():
    from tmdflow.steps import registry

    assert "band_census" not in registry.names()
