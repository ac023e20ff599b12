"""Safe loading: nothing is unpickled, remote code runs only with --trust-remote-code, model output is never run.

The source scan walks the AST of every module under src/ (so comments and docstrings do not count, and
`model.eval()` is not mistaken for the builtin `eval`).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from reasonlens.errors import UserError

SRC = Path(__file__).resolve().parents[1] / "src" / "reasonlens"
PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "cloudpickle", "marshal", "shelve"}
PICKLING_CALLS = {"read_pickle", "to_pickle"}  # pandas


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_constructs(source: str, filename: str = "<string>") -> list[str]:
    """Every unsafe loading or execution construct in `source`, as 'file:line: what'."""
    found: list[str] = []
    tree = ast.parse(source, filename)

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PICKLING_MODULES:
                    flag(node, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in PICKLING_MODULES:
                flag(node, f"from {node.module} import ...")
            for alias in node.names:
                if alias.name in PICKLING_CALLS | {"load"} and (node.module or "") in ("torch", "pandas"):
                    flag(node, f"from {node.module} import {alias.name}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            if name in ("eval", "exec", "compile", "__import__"):
                flag(node, f"{name}(...)")
            elif name == "torch.load" or name.endswith(".torch.load"):
                if not _is_true(keywords.get("weights_only")):
                    flag(node, "torch.load without weights_only=True")
            elif name.split(".")[-1] in PICKLING_CALLS:
                flag(node, f"{name}(...)")
            elif (
                name.split(".")[-1] == "load"
                and name.split(".")[0] in ("np", "numpy")
                and _is_true(keywords.get("allow_pickle"))
            ):
                flag(node, "numpy load with allow_pickle=True")
            elif name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
                flag(node, f"{name} (use yaml.safe_load)")
            if _is_true(keywords.get("trust_remote_code")):
                flag(node, "trust_remote_code=True hard-coded")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args
            defaults = [None] * (len(args) - len(node.args.defaults)) + list(node.args.defaults)
            pairs = list(zip(args, defaults)) + list(zip(node.args.kwonlyargs, node.args.kw_defaults))
            for arg, default in pairs:
                if arg.arg == "trust_remote_code" and _is_true(default):
                    flag(node, f"{node.name}(trust_remote_code=True) default")
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id == "trust_remote_code" and _is_true(node.value):
                flag(node, "trust_remote_code field defaults to True")
    return found


def test_the_scanner_finds_what_it_looks_for():
    bad = """
import pickle
from joblib import load as jl
import torch, numpy as np, yaml
torch.load("x.pt")
torch.load("x.pt", weights_only=False)
np.load("x.npy", allow_pickle=True)
yaml.load(open("c"))
eval(text)
exec(code)
AutoModel.from_pretrained(p, trust_remote_code=True)
def f(spec, trust_remote_code=True): pass
def g(*, trust_remote_code: bool = True): pass
class C:
    trust_remote_code: bool = True
"""
    found = unsafe_constructs(bad)
    lines = sorted(int(f.split(":")[1]) for f in found)
    assert lines == [2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15], found
    good = """
import torch, json
torch.load("x.pt", weights_only=True)
model.eval()
load(spec, trust_remote_code=trust_remote_code)
def f(spec, trust_remote_code=False): pass
"""
    assert unsafe_constructs(good) == []


def test_source_tree_has_no_unsafe_loading_or_execution():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 30  # the scan really covers the package
    found = [
        hit
        for path in files
        for hit in unsafe_constructs(path.read_text(encoding="utf-8"), str(path.relative_to(SRC.parent)))
    ]
    assert found == []


def test_project_artifacts_are_not_pickle_files():
    """Shipped artifacts (bundled data, organisms) are safetensors/json/jsonl/parquet/text, never pickles."""
    suspicious = {".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib", ".npy", ".npz", ".ckpt"}
    shipped = [p for p in SRC.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert [p for p in shipped if p.suffix.lower() in suspicious] == []


def _remote_code_model(root: Path) -> Path:
    """A model directory whose architecture exists only as code in the directory (the hub's auto_map pattern)."""
    model_dir = root / "remote_model"
    model_dir.mkdir()
    sentinel = root / "remote_code_ran"
    code = f"from pathlib import Path\nPath({str(sentinel)!r}).write_text('ran')\n"
    (model_dir / "configuration_evil.py").write_text(
        code
        + ("from transformers import PretrainedConfig\nclass EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n")
    )
    (model_dir / "modeling_evil.py").write_text(code)
    (model_dir / "config.json").write_text(
        json.dumps(
            {
                "model_type": "evil",
                "architectures": ["EvilForCausalLM"],
                "auto_map": {
                    "AutoConfig": "configuration_evil.EvilConfig",
                    "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM",
                },
            }
        )
    )
    return model_dir


def test_remote_code_is_refused_without_the_flag(tmp_path):
    from reasonlens.models import load

    model_dir = _remote_code_model(tmp_path)
    with pytest.raises(UserError, match="--trust-remote-code") as info:
        load(str(model_dir))
    assert str(model_dir) in str(info.value)
    assert not (tmp_path / "remote_code_ran").exists()


def test_only_the_cli_flag_turns_remote_code_on():
    """Every CLI option for remote code is an explicit --trust-remote-code flag that defaults to off."""
    import typer

    from reasonlens.cli import app

    command = typer.main.get_command(app)
    flagged = []

    def walk(group, path):
        for name, sub in getattr(group, "commands", {}).items():
            walk(sub, f"{path} {name}")
        for param in getattr(group, "params", []):
            if "trust" in param.name and "remote" in param.name:
                flagged.append(path)
                assert param.opts == ["--trust-remote-code"] and param.default is False and param.is_flag, path

    walk(command, "reasonlens")
    assert "reasonlens generate" in flagged


def test_model_output_is_never_executed(tmp_path):
    """A completion written as Python code is graded as text: nothing it says runs (math-verify included)."""
    from reasonlens.eval import Grader

    sentinel = tmp_path / "pwned"
    payloads = [
        f"The answer is __import__('os').system('touch {sentinel}')",
        f"Final answer: \\boxed{{__import__('pathlib').Path('{sentinel}').touch()}}",
        f"answer = exec(\"open('{sentinel}','w')\") 7*(3)",
    ]
    with Grader(timeout=5.0) as grader:
        for text in payloads:
            for kind in ("math", "numeric"):
                grade = grader.grade(text, "21", kind=kind)
                assert grade.status in ("ok", "no_answer", "ungradable")
    assert not sentinel.exists()
