"""The package's layout (docs/design.md, "The map"): a framework-independent core, one
subpackage per trainer, and the report pipeline reading one way."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "espnet_pcc"

#: Each layer may import itself and the layers before it: the core; the trainer integrations
#: (neither imports the other); measurement on trained models; the study's pipeline (model
#: dirs -> raw data -> analysis -> tables); the recipes' helpers; the command lines.
LAYERS = [{"core"}, {"espnet2", "lightning"}, {"measurement"}, {"study"}, {"recipe"}, {"bin"}]
#: Top-level modules (errors, files, Kaldi dirs, ...): importable from every layer; they
#: import only the core and each other.
UTILITY = "<utility>"
MAX_CLASS_LINES = 250


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 2 or (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return UTILITY


def rank(layer: str) -> int:
    return 0 if layer == UTILITY else next(i for i, group in enumerate(LAYERS) if layer in group)


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
        if len(parts) > 1:
            yield ".".join(parts), path


def imported(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            yield next(n for n in reversed(names) if _exists(n)) if node.module.startswith(
                "espnet_pcc") else node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def _exists(module: str) -> bool:
    rel = PACKAGE.parent / module.replace(".", "/")
    return rel.with_suffix(".py").exists() or (rel / "__init__.py").exists()


def test_every_import_goes_down_the_layers():
    wrong = []
    for module, path in modules():
        own = layer_of(module)
        for target in imported(path):
            if not target.startswith("espnet_pcc.") or target.count(".") < 1:
                continue
            other = layer_of(target)
            if own == UTILITY:
                ok = other in (UTILITY, "core")
            elif own == other:
                ok = True
            else:
                ok = rank(other) < rank(own) or other == UTILITY
            if not ok:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_the_core_imports_no_trainer():
    """Every core module imported in a fresh interpreter: no espnet2, espnet3, espnet or
    lightning module is loaded, and no espnet_pcc module outside the core but errors."""
    core = sorted(m for m, _ in modules() if m.startswith("espnet_pcc.core"))
    code = ("import importlib, sys\n"
            f"for m in {core!r}: importlib.import_module(m)\n"
            "print('\\n'.join(sorted(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    frameworks = [m for m in loaded if m.split(".")[0] in
                  ("espnet2", "espnet3", "espnet", "lightning", "pytorch_lightning")]
    assert frameworks == []
    outside = [m for m in loaded if m.startswith("espnet_pcc.")
               and not m.startswith("espnet_pcc.core") and m != "espnet_pcc.errors"]
    assert outside == []
    assert len(core) >= 15  # the test saw the core


def test_every_class_reads_in_one_sitting():
    long = [f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for module, path in modules() for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES]
    assert long == []


#: Test helper modules that build or run a trainer.
TRAINER_HELPERS = ("asr_train_helpers", "trainer_helpers", "lightning_helpers", "espnet3_helpers")


def test_the_core_is_tested_without_a_trainer():
    """tests/core mirrors espnet_pcc/core: its tests import no trainer either (a test that
    trains through espnet2 lives in tests/espnet2)."""
    tests = Path(__file__).resolve().parent / "core"
    wrong = [f"{path.relative_to(tests.parent)} imports {target}"
             for path in sorted(tests.rglob("*.py")) for target in imported(path)
             if target.split(".")[0] in ("espnet2", "espnet3", "lightning", *TRAINER_HELPERS)
             or target.startswith(("espnet_pcc.espnet2", "espnet_pcc.lightning", "espnet_pcc.bin"))]
    assert len(list(tests.rglob("test_*.py"))) >= 10  # the test saw the core's tests
    assert wrong == []


ROOT = PACKAGE.parent
#: Every Python file of the project that imports the package: a lazy import inside a function
#: (a bench's main, a stage helper) is checked too, which importing the modules would miss.
SOURCES = ("espnet_pcc", "bench", "tests", "egs2", "egs3", "tools")


def _module_path(module: str):
    rel = ROOT / module.replace(".", "/")
    for path in (rel.with_suffix(".py"), rel / "__init__.py"):
        if path.exists():
            return path
    return None


def _top_level_names(path: Path) -> set:
    names, body = set(), list(ast.parse(path.read_text()).body)
    while body:
        node = body.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try)):
            body += node.body + node.orelse + getattr(node, "finalbody", []) + [
                s for h in getattr(node, "handlers", []) for s in h.body]
    return names


def unresolved_imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (f"import {a.name}" for a in node.names
                        if a.name.split(".")[0] == "espnet_pcc" and _module_path(a.name) is None)
        elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
              and node.module.split(".")[0] == "espnet_pcc"):
            source = _module_path(node.module)
            if source is None:
                yield f"from {node.module} import ..."
                continue
            defined = _top_level_names(source)
            yield from (f"from {node.module} import {a.name}" for a in node.names
                        if a.name not in defined
                        and _module_path(f"{node.module}.{a.name}") is None)


def test_every_import_of_the_package_resolves():
    files = [p for top in SOURCES for p in sorted((ROOT / top).rglob("*.py"))
             if ".venv" not in p.parts]
    wrong = [f"{path.relative_to(ROOT)}: {line}" for path in files
             for line in unresolved_imports(path)]
    assert len(files) > 150  # the test saw the tree
    assert wrong == []
