"""Workflow definitions (YAML in workflows/) validated against a schema, errors with line numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InputError
from .materials import parse_formula
from .presets import MAX_ECUTRHO, Preset, load_preset
from .steps import registry as step_registry


class ConvergenceSpec(BaseModel):
    """kind: convergence -- ladders per parameter (ascending) and the tolerance (meV)."""

    model_config = ConfigDict(extra="forbid")
    tolerance_mev: float = Field(default=2.0, gt=0)
    ladders: dict[str, list[float]] = Field(min_length=1)

    @field_validator("ladders")
    @classmethod
    def _ladders(cls, v: dict[str, list[float]]) -> dict[str, list[float]]:
        from .convergence import ALL_PARAMETERS, INTEGER_PARAMETERS

        from .presets import check_value

        for p, values in v.items():
            if p not in ALL_PARAMETERS:  # which code's parameters: WorkflowSpec checks with the calculator
                raise ValueError(f"cannot converge '{p}'; parameters are {list(ALL_PARAMETERS)}")
            if len(values) < 2 or list(values) != sorted(values):
                raise ValueError(f"the {p} ladder {values} needs >= 2 ascending values")
            for value in values:  # each rung is a preset value: the same bounds as the preset's
                if p in INTEGER_PARAMETERS and not float(value).is_integer():
                    what = "of k-points" if p == "kmesh" else "(an integer preset key)"
                    raise ValueError(f"the {p} ladder {values} has {value}, not a whole number {what}")
                try:
                    check_value(p, int(value) if p in INTEGER_PARAMETERS else float(value))
                except InputError as exc:
                    raise ValueError(f"the {p} ladder: {exc.problem}") from None
        return v


class WorkflowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: str = Field(default="study", pattern=r"^(study|convergence)$")
    convergence: ConvergenceSpec | None = None
    description: str = ""
    calculator: str = "espresso"
    preset: str = "quick"
    overrides: dict[str, Any] = Field(default_factory=dict)
    materials: list[str] = Field(min_length=1)
    structures: list[str] = Field(default_factory=lambda: ["monolayer"], min_length=1)
    steps: list[str] = Field(default_factory=lambda: list(step_registry.required("scf")), min_length=1)
    # starting geometries from the user's files (CIF/POSCAR), per formula; paths relative to the
    # workflow file.  Read when the workflow is loaded: only the numbers travel with the steps.
    structure_files: dict[str, str] = Field(default_factory=dict)
    geometries: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict, exclude=True)

    @field_validator("materials")
    @classmethod
    def _formulas(cls, v: list[str]) -> list[str]:
        out = []
        for f in v:
            try:
                m, x = parse_formula(f)
            except InputError as exc:
                raise ValueError(str(exc.problem)) from None
            out.append(f"{m}{x}2")
        if len(set(out)) != len(out):
            raise ValueError("a material is listed twice")
        return out

    @field_validator("calculator")
    @classmethod
    def _calculator(cls, v: str) -> str:
        from .calculators import registered_calculators

        if v not in registered_calculators():
            raise ValueError(f"unknown calculator '{v}'; choose one of {registered_calculators()}")
        return v

    @field_validator("structures")
    @classmethod
    def _structures(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if s not in ("monolayer", "bulk")]
        if bad:
            raise ValueError(f"unknown structure {bad}; use monolayer and/or bulk")
        return v

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[str]) -> list[str]:
        problems = step_registry.order_problems(v)  # names, order, core before optional (the registry's rules)
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "WorkflowSpec":
        if self.kind == "convergence":
            if self.convergence is None:
                raise ValueError("kind: convergence needs a convergence: section (ladders, tolerance_mev)")
            from .convergence import CALCULATOR_PARAMETERS

            if self.structures != ["monolayer"] or self.calculator not in CALCULATOR_PARAMETERS:
                raise ValueError(f"convergence studies run monolayers with the {' or '.join(CALCULATOR_PARAMETERS)}"
                                 " calculator")
            other = [p for p in self.convergence.ladders if p not in CALCULATOR_PARAMETERS[self.calculator]]
            if other:
                raise ValueError(f"cannot converge {other} with {self.calculator}; its parameters are "
                                 f"{list(CALCULATOR_PARAMETERS[self.calculator])}")
            preset = self.load_preset()
            top = max(self.convergence.ladders.get("ecutwfc", [preset.ecutwfc]))
            if top * preset.ecutrho / preset.ecutwfc > MAX_ECUTRHO:  # ecutrho keeps the preset's ratio
                raise ValueError(f"the ecutwfc ladder reaches {top:g} Ry, so ecutrho {top * preset.ecutrho / preset.ecutwfc:g}"
                                 f" Ry (the preset's ratio), above its limit {MAX_ECUTRHO:g} Ry")
            return self
        if self.convergence is not None:
            raise ValueError("a convergence: section needs kind: convergence")
        core = set(step_registry.core_names())
        missing_core = [s for s in self.steps if s in core and s not in self.calculator_steps()]
        if missing_core:
            raise ValueError(f"calculator '{self.calculator}' does not implement {missing_core}")
        problems = step_registry.mode_problems(self.steps, self.load_preset().spin_orbit_mode)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def geometry(self, formula: str, dimensionality: str) -> dict[str, Any] | None:
        return self.geometries.get(formula, {}).get(dimensionality)

    def calculator_steps(self) -> list[str]:
        """The steps submitted for this calculator: the optional figure steps are left out for
        codes that do not implement them (``skipped_steps`` names them)."""
        supported = step_registry.for_calculator(self.calculator)
        return [s for s in self.steps if s in supported]

    def skipped_steps(self) -> list[str]:
        return [s for s in self.steps if s not in self.calculator_steps()]

    def load_preset(self, override_name: str | None = None) -> Preset:
        try:
            return load_preset(override_name or self.preset, self.overrides)
        except InputError as exc:
            raise ValueError(exc.problem) from None


def _line_of(root: yaml.Node | None, loc: tuple) -> int | None:
    node = root
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if k.value == key]
            if not match:
                break
            node = match[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
    return node.start_mark.line + 1 if node is not None else None


def load_workflow(path: Path, preset: str | None = None, calculator: str | None = None,
                  materials: list[str] | None = None) -> WorkflowSpec:
    """Read and validate ``path``; ``preset`` / ``calculator`` / ``materials`` replace the file's
    (CLI options); structure files are read and checked here, before anything is submitted."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"workflow file {path} not found", "see workflows/ for examples")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a text (UTF-8) YAML file", "give a workflow definition (see workflows/)") \
            from None
    except OSError as exc:
        raise InputError(f"cannot read workflow file {path}: {exc.strerror}", "check the path and its permissions") \
            from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}", "fix the syntax") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a workflow is a mapping (name:, materials:, ...)", "see workflows/quick.yaml")
    if preset:
        data["preset"] = preset
    if calculator:
        data["calculator"] = calculator
    if materials:
        data["materials"] = list(materials)
    _check_overrides(data, root, path)
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_of(root, loc)
            where = ".".join(str(p) for p in loc) or "(top level)"
            problems.append(f"{path}:{line or '?'}: {where}: {err['msg']}")
        raise InputError("invalid workflow:\n  " + "\n  ".join(problems),
                         "fix the fields named above (schema: tmdflow/workflow_spec.py)") from None
    return _read_structure_files(spec, path, root)


def _check_overrides(data: dict, root, path: Path) -> None:
    """The preset overrides against the preset schema (types, ranges, enumerations): an error names
    the file line of the offending key (the schema's own errors would point at the top level)."""
    overrides = data.get("overrides")
    preset = data.get("preset", WorkflowSpec.model_fields["preset"].default)
    if not isinstance(overrides, dict) or not isinstance(preset, str):
        return  # the schema reports those
    try:
        load_preset(preset, overrides)
    except InputError as exc:
        keys = [k for k in getattr(exc, "keys", []) if k in overrides]
        if not keys:
            return  # not about an override (e.g. an unknown preset): the schema reports it with its line
        line = _line_of(root, ("overrides", keys[0]))
        raise InputError(f"invalid workflow:\n  {path}:{line or '?'}: overrides.{keys[0]}: {exc.problem}",
                         exc.remedy) from None


def _read_structure_files(spec: WorkflowSpec, path: Path, root) -> WorkflowSpec:
    from .structure_input import read_geometry
    from .structures import check_geometry

    geometries: dict[str, dict[str, dict[str, Any]]] = {}
    for formula, file in spec.structure_files.items():
        line = _line_of(root, ("structure_files", formula))
        where = f"{path}:{line or '?'}: structure_files.{formula}"
        try:
            geo = read_geometry((path.parent / file) if not Path(file).is_absolute() else Path(file))
            check_geometry(a=geo.a, d=geo.d, c=geo.c)
        except InputError as exc:
            raise InputError(f"{where}: {exc.problem}", exc.remedy) from None
        if geo.formula != parse_formula_str(formula):
            raise InputError(f"{where}: the file holds {geo.formula}, not {formula}", "fix the mapping")
        if geo.formula not in spec.materials:
            raise InputError(f"{where}: {geo.formula} is not among the workflow's materials {spec.materials}",
                             "add it to materials: or remove the file")
        if geo.dimensionality not in spec.structures:
            raise InputError(f"{where}: the file holds a {geo.dimensionality}, the workflow computes {spec.structures}",
                             "give a file of a structure the workflow computes")
        geometries.setdefault(geo.formula, {})[geo.dimensionality] = geo.as_dict()
    return spec.model_copy(update={"geometries": geometries})


def parse_formula_str(formula: str) -> str:
    m, x = parse_formula(formula)
    return f"{m}{x}2"
