"""The dependency rule, enforced: every import in lab/, synth_render/, analysis/ and experiments/ points down the
layer order (imports inside functions and `importlib.import_module("...")` strings included).

    experiments -> lab run (launch, sweep, slurm) -> lab stages -> lab train/tasks -> lab data, models, parallel
    -> lab core (registry, config, rundir, checkpoint, distributed, results)
    synth_render -> lab core and lab data only;  analysis -> nothing of ours;  nothing imports experiments

A module's layer is the one of the longest prefix in LAYERS that names it or a package above it; a layer may
import itself and what MAY_IMPORT lists. When lab is regrouped into packages, edit LAYERS (and only LAYERS).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lab", "synth_render", "analysis", "experiments")

LAYERS = {  # module prefix -> layer; the longest matching prefix wins
    "lab.core": "core",  # registry, config, rundir, checkpoint, distributed, results, provenance
    "lab.data": "data",
    "lab.models": "models",
    "lab.parallel": "models",
    "lab.train": "train",
    "lab.tasks": "train",
    "lab.eval": "train",  # runs models on question sets (lab.models, lab.data)
    "lab.post": "train",  # SFT, DPO, distillation, pruning, quantisation, and what measures them
    "lab.stages": "stages",
    "lab.run": "run",
    "synth_render": "synth_render",
    "analysis": "analysis",
    "experiments": "experiments",
    # old paths kept for one release (issue 17): each is its new module under another name (sys.modules alias)
    **{f"lab.{old}": "core" for old in ("registry", "config", "rundir", "checkpoint", "distributed", "results")},
    **{f"lab.{old}": "run" for old in ("launch", "sweep", "slurm")},
    **{f"lab.{old}": "stages" for old in ("stages3d", "text_stages", "batch_control")},
    "lab.pretrain_tasks": "train",
    "lab.lm_train": "train",
}

MAY_IMPORT = {  # layer -> the other layers it may import
    "core": set(),
    "data": {"core", "models"},  # data, models and parallel are one layer
    "models": {"core", "data"},
    "train": {"core", "data", "models"},
    "stages": {"core", "data", "models", "train"},
    "run": {"core", "data", "models", "train", "stages"},
    "synth_render": {"core", "data"},
    "analysis": set(),
    "experiments": {"core", "data", "models", "train", "stages", "run", "synth_render", "analysis"},
}

# Old import paths kept for one release (issue 17) whose new home is above them: (importer, imported) -> the
# import that code outside lab still uses, as (module, name). Delete an entry and its re-export once nothing uses
# the old path (test_every_temporary_reexport_still_has_a_caller says when).
TEMPORARY_REEXPORTS = {
    ("lab.eval.pfgen.lab_sets", "synth_render.text.question_sets"): ("lab.eval.pfgen.lab_sets", ""),
    ("lab.post.instruct_data", "synth_render.text.instruct_data"): ("lab.post.instruct_data", ""),
    ("lab.post.measure", "synth_render.text.question_sets"): ("lab.post.measure", "build_question_set"),
}

# Names that jobs and plans pickled before issue 17 hold, resolved lazily (a module __getattr__) from their old
# module to the stage that moved above it; kept for one release. tests/test_old_paths.py checks they resolve.
PICKLED_NAMES = {
    ("lab.tasks.finetune", "lab.stages.task_finetune"),
}

# Issue #17, not yet done: the layer regrouping that removes these is in progress. The list may only shrink:
# test_open_violations_still_exist fails as soon as one is fixed, so its entry is deleted with the fix.
OPEN_VIOLATIONS: set[tuple[str, str]] = set()  # all fixed; a new entry may not be added


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str  # the importing module
    target: str  # the module imported (a submodule when `from package import submodule`)


@dataclass(frozen=True)
class Violation:
    where: str  # file:line
    module: str
    target: str
    rule: str

    def __str__(self) -> str:
        return f"{self.where}: {self.module} imports {self.target}: {self.rule}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[Path]:
    return sorted(p for package in packages if (root / package).is_dir() for p in (root / package).rglob("*.py"))


def _string_imports(node: ast.Call) -> list[str]:
    """Modules named by `importlib.import_module("x")`, `__import__("x")` and a registry's `discover="x"`."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    values = list(node.args[:1]) if name in ("import_module", "__import__") else []
    values += [k.value for k in node.keywords if k.arg == "discover"]
    found = []
    for value in values:
        items = value.elts if isinstance(value, (ast.Tuple, ast.List)) else [value]
        found += [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
    return [f for f in found if not f.startswith(".")]


def imports_of(path: Path, root: Path, modules: set[str]) -> list[Import]:
    """Every import of `path` (module level, inside functions, by string), resolved to module names."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, module, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(path, node.lineno, module, sub if sub in modules else base))
        elif isinstance(node, ast.Call):
            found += [Import(path, node.lineno, module, target) for target in _string_imports(node)]
    return found


def layer_of(module: str, layers: dict[str, str] = LAYERS) -> str | None:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in layers:
            return layers[prefix]
    return None


def find_violations(root: Path, layers: dict[str, str] = LAYERS, may_import: dict[str, set[str]] = MAY_IMPORT,
                    allowed: set[tuple[str, str]] = frozenset(), packages: tuple[str, ...] = PACKAGES) -> list[Violation]:
    """Every import under `root` that runs against the layer order (or touches a module without a layer)."""
    files = source_files(root, packages)
    modules = {module_name(p, root) for p in files}
    violations: dict[tuple[Path, int, str], Violation] = {}  # one per import line and target
    for path in files:
        for imp in imports_of(path, root, modules):
            if imp.target.split(".")[0] not in packages or (imp.module, imp.target) in allowed:
                continue
            where = f"{path.relative_to(root)}:{imp.line}"
            source, target = layer_of(imp.module, layers), layer_of(imp.target, layers)
            if source is None or target is None:
                missing = imp.module if source is None else imp.target
                rule = f"{missing} has no layer in LAYERS"
            elif target != source and target not in may_import[source]:
                rule = f"{source} may import only {', '.join(sorted(may_import[source] | {source}))}, not {target}"
            else:
                continue
            violations.setdefault((path, imp.line, imp.target), Violation(where, imp.module, imp.target, rule))
    return list(violations.values())


def test_every_import_follows_the_layer_order():
    violations = find_violations(REPO, allowed=set(TEMPORARY_REEXPORTS) | OPEN_VIOLATIONS | PICKLED_NAMES)
    if violations:
        pytest.fail(f"{len(violations)} imports run against the layer order:\n" + "\n".join(map(str, violations)),
                    pytrace=False)


def test_open_violations_still_exist():
    """An entry of OPEN_VIOLATIONS that no longer occurs has been fixed: delete it, so it cannot come back."""
    found = {(v.module, v.target) for v in find_violations(REPO, allowed=set(TEMPORARY_REEXPORTS) | PICKLED_NAMES)}
    assert OPEN_VIOLATIONS <= found, f"fixed, delete from OPEN_VIOLATIONS: {sorted(OPEN_VIOLATIONS - found)}"


def test_every_layer_has_a_rule():
    assert set(LAYERS.values()) <= set(MAY_IMPORT)
    assert all(rules <= set(MAY_IMPORT) for rules in MAY_IMPORT.values())


def test_every_temporary_reexport_still_has_a_caller():
    """An old path that nothing outside lab imports any more is dead: delete its re-export and its entry."""
    outside = [p for folder in ("experiments", "tests", "benchmarks", "notebooks") if (REPO / folder).is_dir()
               for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".ipynb") and p != Path(__file__)]
    texts = [p.read_text(encoding="utf-8") for p in outside]
    for (importer, _), (module, name) in TEMPORARY_REEXPORTS.items():
        used = (rf"from {re.escape(module)} import\b[^\n]*\b{name}\b" if name else
                rf"\b{re.escape(module)}\b")
        assert any(re.search(used, text) for text in texts), f"nothing imports {module} {name}: drop {importer}'s"


def plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_finds_a_planted_back_import(tmp_path):
    root = plant(tmp_path, {
        "lab/__init__.py": "",
        "lab/core/registry.py": "",
        "lab/train.py": "from lab.core import registry\n\n\ndef train():\n    from synth_render.text import world\n",
        "lab/data/__init__.py": "",
        "lab/data/shards.py": "from ..train import train\n",
        "lab/run/launch.py": "import importlib\n\nstages = importlib.import_module('lab.stages.image')\n",
        "lab/stages/image.py": "from lab.run.launch import stages\n",
        "synth_render/__init__.py": "",
        "synth_render/text/__init__.py": "",
        "synth_render/text/world.py": "from lab.data import shards\nfrom lab.models import create_model\n",
        "analysis/__init__.py": "import experiments\n",
        "experiments/__init__.py": "import lab.run.launch, synth_render, analysis\n",
    })
    found = {(v.where, v.target, v.rule) for v in find_violations(root)}
    assert found == {
        ("lab/train.py:5", "synth_render.text.world", "train may import only core, data, models, train, not synth_render"),
        ("lab/data/shards.py:1", "lab.train", "data may import only core, data, models, not train"),
        ("lab/stages/image.py:1", "lab.run.launch", "stages may import only core, data, models, stages, train, not run"),
        ("synth_render/text/world.py:2", "lab.models",
         "synth_render may import only core, data, synth_render, not models"),
        ("analysis/__init__.py:1", "experiments", "analysis may import only analysis, not experiments"),
    }


def test_the_checker_reads_string_imports_and_unmapped_modules(tmp_path):
    root = plant(tmp_path, {
        "lab/__init__.py": "",
        "lab/core/config.py": "from lab.core.registry import Registry\n\nR = Registry('x', discover='synth_render')\n",
        "lab/core/registry.py": "__import__('lab.brand_new')\n",
        "lab/brand_new.py": "",
        "synth_render/__init__.py": "",
    })
    found = sorted(str(v) for v in find_violations(root))
    assert found == ["lab/core/config.py:3: lab.core.config imports synth_render: core may import only core, not synth_render",
                     "lab/core/registry.py:1: lab.core.registry imports lab.brand_new: lab.brand_new has no layer in LAYERS"]
