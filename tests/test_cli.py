"""The CLI: end-to-end generate with resume, and one-line errors with exit code 2."""

import json
import os
import subprocess
import sys

import pytest

BIN = [sys.executable, "-m", "reasonlens.cli"]


def run(*args, cwd=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.run(BIN + list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_generate_then_resume(tmp_path):
    out = tmp_path / "run"
    args = [
        "generate",
        "--model",
        "tiny-llama",
        "--dataset",
        "gsm8k",
        "--limit",
        "3",
        "--max-new-tokens",
        "5",
        "--batch-size",
        "2",
        "--layers",
        "-1,0",
        "--out",
        str(out),
    ]
    first = run(*args)
    assert first.returncode == 0, first.stderr
    assert "accuracy" in first.stdout and str(out) in first.stdout
    results = (out / "results.jsonl").read_bytes()
    assert len(results.splitlines()) == 3
    assert sorted(p.name for p in (out / "states").iterdir()) == [
        "000000.safetensors",
        "000001.safetensors",
        "000002.safetensors",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 3 and summary["command"] == "generate"
    again = run(*args)
    assert again.returncode == 0, again.stderr
    assert (out / "results.jsonl").read_bytes() == results


@pytest.mark.parametrize(
    "args,needle",
    [
        (["generate", "--model", "nope", "--dataset", "gsm8k", "--out", "X"], "unknown model 'nope'"),
        (["generate", "--model", "tiny-llama", "--dataset", "nope", "--out", "X"], "unknown dataset 'nope'"),
        (["generate", "--model", "tiny-llama", "--dataset", "gsm8k", "--layers", "9", "--out", "X"], "invalid layer 9"),
        (
            ["generate", "--model", "tiny-llama", "--dataset", "gsm8k", "--max-new-tokens", "-3", "--out", "X"],
            "--max-new-tokens",
        ),
        (["generate", "--model", "tiny-llama", "--dataset", "gsm8k", "--limit", "abc", "--out", "X"], "--limit"),
        (["generate", "--model", "tiny-llama", "--dataset", "gsm8k", "--bogus"], "--bogus"),
        (
            ["generate", "--model", "tiny-llama", "--dataset", "gsm8k", "--template", "fancy", "--out", "X"],
            "--template",
        ),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path, args, needle):
    args = [str(tmp_path / a) if a == "X" else a for a in args]
    result = run(*args)
    assert result.returncode == 2
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "X").exists()


def test_malformed_dataset_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a", "answer": "1"}\n{"question": "b"}\n')
    result = run("generate", "--model", "tiny-llama", "--dataset", str(bad), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and f"{bad}:2: missing field 'answer'" in result.stderr


def test_organism_without_dataset_uses_its_card(tmp_path):
    out = tmp_path / "org"
    result = run(
        "generate",
        "--model",
        "organism-cot",
        "--limit",
        "2",
        "--max-new-tokens",
        "4",
        "--layers",
        "none",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "manifest.json").read_text())["dataset"] == "synthetic-arith-small:1-3"
    missing = run("generate", "--model", "tiny-llama", "--out", str(tmp_path / "t"))
    assert missing.returncode == 2 and "--dataset is required" in missing.stderr
