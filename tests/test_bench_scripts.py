"""The scripts outside the package (bench/*.py, tests/fixtures/make_fixtures.py) still match the
package's API: no pw.x, a few seconds.

These scripts run only by hand (minutes to hours of pw.x), so nothing else calls them; after the
calculator protocol changed (``calc.relax(job)`` instead of ``calc.relax(atoms, preset, ...)``),
bench/relax_vacuum.py and make_fixtures.py still imported and answered ``--help``, and failed only
when they ran.  An import or ``--help`` test would not have caught that, so the test that matters
here is a static one: :class:`ApiCheck` follows, through each script's source (ast), the types of
the values it gets from tmdflow (from annotations of its parameters and from the return
annotations of the tmdflow functions, classes and methods it calls) and checks that

* every attribute it reads on a tmdflow object, class or module exists (a dataclass or pydantic
  field, a property, a method, an attribute ``__init__`` sets, a Protocol member), and
* every call of a tmdflow function, class or method binds to its signature (positional count and
  keyword names; ``*args``/``**kwargs`` in a call skip the check),
* no tmdflow object without ``__getitem__`` is subscripted (``outputs["key"]``).

The old ``calc.relax(atoms, preset, work, files, kmesh, variable_cell=True)`` on the adapter
``get_calculator`` returns does not bind to ``relax(self, job)``:
:func:`test_the_check_finds_the_calls_that_broke` runs the check on the pre-protocol code and
requires it to fail there.  Besides, every script is imported and its ``main()`` answers ``--help``.
Values the check cannot type (results of non-tmdflow calls, subscripts, unannotated parameters)
are not checked.
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import importlib.util
import inspect
import sys
import textwrap
import types
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SCRIPTS = sorted(BENCH.glob("*.py")) + [ROOT / "tests" / "fixtures" / "make_fixtures.py"]

UNKNOWN = None


@dataclasses.dataclass(frozen=True)
class Obj:
    """A value the script names directly: a module, class or function."""

    value: object


@dataclasses.dataclass(frozen=True)
class Inst:
    """An instance of a class (or a typing alias such as ``list[TaskDocument]``)."""

    type: object


@dataclasses.dataclass(frozen=True)
class Method:
    """A method read on an instance of ``cls`` (bound: the call passes no receiver)."""

    cls: type
    name: str


def ours(obj) -> bool:
    """Checked: tmdflow's own modules, classes and functions, and the scripts' (bench/sweep.py's too)."""
    module = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None) or ""
    if module == "tmdflow" or module.startswith("tmdflow."):
        return True
    file = getattr(sys.modules.get(module), "__file__", None)
    return file is not None and Path(file).resolve() in SCRIPTS


def strip_optional(t):
    """``X | None`` -> X; other unions -> unknown."""
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(t) if a is not type(None)]
        return rest[0] if len(rest) == 1 else UNKNOWN
    return t


def _hints(obj) -> dict:
    try:
        return typing.get_type_hints(obj)
    except Exception:  # a name only imported under TYPE_CHECKING: evaluate what can be evaluated
        namespace = vars(sys.modules.get(getattr(obj, "__module__", ""), types))
        out = {}
        for klass in (obj.__mro__ if isinstance(obj, type) else (obj,)):
            for name, hint in getattr(klass, "__annotations__", {}).items():
                try:
                    out.setdefault(name, eval(hint, namespace) if isinstance(hint, str) else hint)
                except Exception:
                    out.setdefault(name, UNKNOWN)
        return out


def instance_attributes(cls: type) -> set[str]:
    """Names ``self.<name> = ...`` assigns in the methods of ``cls`` and its bases."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if not ours(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name) and node.value.id == "self"):
                names.add(node.attr)
    return names


def has_attribute(cls: type, name: str) -> bool:
    if hasattr(cls, name) or name in _hints(cls) or name in getattr(cls, "model_fields", {}):
        return True
    return name in instance_attributes(cls)


def attribute_type(cls: type, name: str):
    """The declared type of ``cls().name``: a field's annotation, a property's return hint, an
    attribute ``__init__`` sets from its annotated parameter, or a :class:`Method`."""
    fields = getattr(cls, "model_fields", {})
    if name in fields:
        return Inst(strip_optional(fields[name].annotation))
    static = inspect.getattr_static(cls, name, None)
    if isinstance(static, property):
        return Inst(strip_optional(_hints(static.fget).get("return"))) if static.fget else UNKNOWN
    if callable(static) or isinstance(static, (staticmethod, classmethod)):
        return Method(cls, name)
    hint = _hints(cls).get(name)
    if hint is None:  # ``self.name = name`` in __init__: the parameter's annotation
        init = cls.__init__
        try:
            if ours(init) and f"self.{name} = {name}\n" in inspect.getsource(init):
                hint = _hints(init).get(name)
        except (OSError, TypeError):  # a generated __init__ (dataclass) has no source
            pass
    return Inst(strip_optional(hint)) if hint is not None else UNKNOWN


def call_signature(target) -> tuple[inspect.Signature | None, bool]:
    """(signature, needs a receiver) of what a call names."""
    if isinstance(target, Method):
        cls, name = target.cls, target.name
        static = inspect.getattr_static(cls, name)
        function = getattr(cls, name)
        try:
            return inspect.signature(function), not isinstance(static, (staticmethod, classmethod))
        except (TypeError, ValueError):
            return None, False
    try:
        return inspect.signature(target), False
    except (TypeError, ValueError):
        return None, False


def return_type(target):
    """What calling ``target`` gives: an instance of a class, or a function's return hint."""
    if isinstance(target, Method):
        target = getattr(target.cls, target.name)
    if isinstance(target, type):
        return Inst(target)
    hint = _hints(target).get("return")
    return Inst(strip_optional(hint)) if hint is not None else UNKNOWN


def element_type(t):
    """The element of ``list[X]``, ``tuple[X, ...]``, ``Sequence[X]``... (unknown otherwise)."""
    args = typing.get_args(t)
    if typing.get_origin(t) in (list, set, frozenset, collections.abc.Sequence, collections.abc.Iterable) and args:
        return Inst(strip_optional(args[0]))
    if typing.get_origin(t) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return Inst(strip_optional(args[0]))
    return UNKNOWN


class ApiCheck(ast.NodeVisitor):
    """Walk one script's source with its module's globals; collect every mismatch with the
    package (``problems``) and count what was checked (``checked``)."""

    def __init__(self, namespace: dict, filename: str) -> None:
        self.namespace = namespace
        self.filename = filename
        self.env: dict[str, object] = {}  # local name -> Obj / Inst / UNKNOWN (shadows the globals)
        self.problems: list[str] = []
        self.checked = 0

    # -- what an expression is ------------------------------------------------------------------
    def type_of(self, node):
        if isinstance(node, ast.Name):
            if node.id in self.env:
                return self.env[node.id]
            if node.id in self.namespace:
                return Obj(self.namespace[node.id])
            return UNKNOWN
        if isinstance(node, ast.Attribute):
            return self.member(self.type_of(node.value), node.attr, node, check=False)
        if isinstance(node, ast.Call):
            target = self.callee(node.func)
            return return_type(target) if target is not None else UNKNOWN
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            first = self.type_of(node.values[0])  # a tmdflow object is truthy unless it has a length
            if isinstance(first, Inst) and isinstance(first.type, type) and ours(first.type) \
                    and not hasattr(first.type, "__bool__") and not hasattr(first.type, "__len__"):
                return first
        if isinstance(node, ast.NamedExpr):
            return self.type_of(node.value)
        return UNKNOWN

    def member(self, base, name: str, node, check: bool):
        """The type of ``base.name``; with ``check``, report a missing attribute."""
        if isinstance(base, Obj):
            value = base.value
            if not ours(value):
                return UNKNOWN
            if check:
                self.checked += 1
                if not hasattr(value, name):
                    self.report(node, f"{getattr(value, '__name__', value)!s} has no attribute {name!r}")
                    return UNKNOWN
            return Obj(getattr(value, name)) if hasattr(value, name) else UNKNOWN
        if isinstance(base, Inst):
            cls = base.type
            if not (isinstance(cls, type) and ours(cls)):
                return UNKNOWN
            if check:
                self.checked += 1
                if not has_attribute(cls, name):
                    self.report(node, f"{cls.__name__} has no attribute {name!r}")
                    return UNKNOWN
            return attribute_type(cls, name) if has_attribute(cls, name) else UNKNOWN
        return UNKNOWN

    def callee(self, func):
        """What a call's function expression names: an Obj's value, or a :class:`Method`."""
        t = self.type_of(func)
        if isinstance(t, Obj) and callable(t.value) and ours(t.value):
            return t.value
        if isinstance(t, Method):
            return t
        return None

    def report(self, node, message: str) -> None:
        self.problems.append(f"{self.filename}:{node.lineno}: {ast.unparse(node)[:120]}: {message}")

    # -- binding names --------------------------------------------------------------------------
    def bind(self, target, t) -> None:
        if isinstance(target, ast.Name):
            self.env[target.id] = t
        elif isinstance(target, (ast.Tuple, ast.List)):
            parts = typing.get_args(t.type) if isinstance(t, Inst) and typing.get_origin(t.type) is tuple else ()
            known = len(parts) == len(target.elts) and Ellipsis not in parts
            for i, element in enumerate(target.elts):
                self.bind(element, Inst(strip_optional(parts[i])) if known else UNKNOWN)
        elif isinstance(target, ast.Starred):
            self.bind(target.value, UNKNOWN)
        else:
            self.visit(target)

    def unbind_all(self, target) -> None:
        for node in ast.walk(target):
            if isinstance(node, ast.Name):
                self.env[node.id] = UNKNOWN

    # -- statements -----------------------------------------------------------------------------
    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.bind(target, self.type_of(node.value))

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.bind(node.target, self.annotation(node.annotation))

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        self.unbind_all(node.target)

    def visit_For(self, node: ast.For) -> None:
        self.visit(node.iter)
        it = self.type_of(node.iter)
        self.bind(node.target, element_type(it.type) if isinstance(it, Inst) else UNKNOWN)
        for statement in node.body + node.orelse:
            self.visit(statement)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self.unbind_all(item.optional_vars)
        for statement in node.body:
            self.visit(statement)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.env[node.name] = UNKNOWN
        self.generic_visit(node)

    def visit_Import(self, node) -> None:
        for alias in node.names:
            self.env.pop((alias.asname or alias.name).split(".")[0], None)  # the module global

    visit_ImportFrom = visit_Import

    def annotation(self, node):
        if node is None:
            return UNKNOWN
        try:
            return Inst(strip_optional(eval(ast.unparse(node), self.namespace)))
        except Exception:
            return UNKNOWN

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        outer = dict(self.env)
        a = node.args
        for arg in a.posonlyargs + a.args + a.kwonlyargs:
            self.env[arg.arg] = self.annotation(arg.annotation)
        for arg in (a.vararg, a.kwarg):
            if arg is not None:
                self.env[arg.arg] = UNKNOWN
        for default in a.defaults + [d for d in a.kw_defaults if d is not None]:
            self.visit(default)
        for statement in node.body:
            self.visit(statement)
        self.env = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        outer = dict(self.env)
        for arg in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
            self.env[arg.arg] = UNKNOWN
        self.visit(node.body)
        self.env = outer

    def _comprehension(self, node, *parts) -> None:
        outer = dict(self.env)
        for generator in node.generators:
            self.visit(generator.iter)
            it = self.type_of(generator.iter)
            self.bind(generator.target, element_type(it.type) if isinstance(it, Inst) else UNKNOWN)
            for condition in generator.ifs:
                self.visit(condition)
        for part in parts:
            self.visit(part)
        self.env = outer

    def visit_ListComp(self, node) -> None:
        self._comprehension(node, node.elt)

    visit_SetComp = visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node) -> None:
        self._comprehension(node, node.key, node.value)

    # -- expressions ----------------------------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.visit(node.value)
        if isinstance(node.ctx, ast.Load):
            self.member(self.type_of(node.value), node.attr, node, check=True)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self.generic_visit(node)
        t = self.type_of(node.value)
        if isinstance(t, Inst) and isinstance(t.type, type) and ours(t.type) and isinstance(node.ctx, ast.Load):
            self.checked += 1
            if not hasattr(t.type, "__getitem__"):
                self.report(node, f"{t.type.__name__} is not subscriptable (read its attributes)")

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        target = self.callee(node.func)
        if target is None:
            return
        sig, receiver = call_signature(target)
        if sig is None or any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            return
        self.checked += 1
        try:
            sig.bind(*([None] * (len(node.args) + receiver)), **{k.arg: None for k in node.keywords})
        except TypeError as e:
            name = target.name if isinstance(target, Method) else getattr(target, "__qualname__", target)
            self.report(node, f"does not match {name}{sig}: {e}")


def load(path: Path) -> types.ModuleType:
    """Import a script as module ``bench_script_<name>`` (bench/ on the path for ``from sweep import``)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    name = f"bench_script_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def check_source(source: str, namespace: dict, filename: str) -> ApiCheck:
    check = ApiCheck(namespace, filename)
    check.visit(ast.parse(source))
    return check


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_script_matches_the_package_api(path):
    module = load(path)
    check = check_source(path.read_text(), vars(module), str(path.relative_to(ROOT)))
    assert not check.problems, "\n".join(check.problems)


#: bench/sweep.py is a library of the scripts beside it: it has no main, nothing to ask for --help
COMMANDS = [p for p in SCRIPTS if p.name != "sweep.py"]


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: p.name)
def test_script_answers_help(path, monkeypatch, capsys):
    module = load(path)
    monkeypatch.setattr(sys, "argv", [str(path), "--help"])
    with pytest.raises(SystemExit) as stop:
        module.main()
    assert stop.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_the_scripts_calls_into_tmdflow_are_checked():
    """The check sees the calls this bug was about (not a check that passes by seeing nothing)."""
    counts = {}
    for path in SCRIPTS:
        counts[path.name] = check_source(path.read_text(), vars(load(path)), path.name).checked
    assert all(n > 0 for name, n in counts.items() if name != "sweep.py"), counts
    assert counts["relax_vacuum.py"] >= 10 and counts["make_fixtures.py"] >= 30, counts


# the calls that broke, as they were before the port (bench/relax_vacuum.py, make_fixtures.py,
# bench/study_times.py at c93f065)
PRE_PROTOCOL = {
    "relax_vacuum.py": """
def relax_once(formula: str, preset_name: str, vacuum: float) -> dict:
    settings = load_settings()
    preset = dataclasses.replace(load_preset(preset_name), vacuum=vacuum)
    atoms = initial_structure(formula, "monolayer", preset)
    calc = get_calculator("espresso", settings)
    result, relaxed = calc.relax(atoms, preset, work, scalar, (preset.kmesh, preset.kmesh, 1), variable_cell=True)
""",
    "make_fixtures.py": """
def main() -> None:
    calc = EspressoCalculator.from_settings(settings)
    calc.scf(atoms, preset, work / "sr", scalar, spin_orbit=False, kmesh=monkhorst_pack_2d(preset.kmesh))
""",
    "study_times.py": """
def cpu_seconds(task: TaskDocument) -> float | None:
    recorded = (task.outputs or {}).get("pw_cpu_seconds")
""",
}


@pytest.mark.parametrize("script", sorted(PRE_PROTOCOL))
def test_the_check_finds_the_calls_that_broke(script):
    path = next(p for p in SCRIPTS if p.name == script)
    namespace = dict(vars(load(path)))
    from tmdflow.calculators import get_calculator
    namespace.setdefault("get_calculator", get_calculator)
    check = check_source(PRE_PROTOCOL[script], namespace, script)
    assert len(check.problems) == 1, check.problems
    assert {"relax_vacuum.py": "relax(", "make_fixtures.py": "scf(",
            "study_times.py": "no attribute 'get'"}[script] in check.problems[0]
