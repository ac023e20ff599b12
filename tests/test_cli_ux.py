"""The CLI as a new user meets it: dtype and device options, renamed options, hints, --version, doctor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from reasonlens.cli_options import RENAMED, command_path, rewrite_renamed
from reasonlens.errors import UserError
from reasonlens.models.dtypes import DTYPES, canonical_dtype, check_device

BIN = [sys.executable, "-m", "reasonlens.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "OMP_NUM_THREADS": "1"}


def run(*args, cwd=None):
    return subprocess.run(BIN + list(args), capture_output=True, text=True, cwd=cwd, env=ENV, timeout=300)


@pytest.mark.parametrize(
    "spelling,canonical",
    [
        ("bf16", "bf16"),
        ("bfloat16", "bf16"),
        ("BF16", "bf16"),
        ("fp16", "fp16"),
        ("float16", "fp16"),
        ("fp32", "fp32"),
        ("float32", "fp32"),
        (torch.bfloat16, "bf16"),
    ],
)
def test_every_dtype_spelling_maps_to_one_name(spelling, canonical):
    assert canonical_dtype(spelling) == canonical
    assert DTYPES[canonical] is DTYPES[canonical_dtype(spelling)]


def test_unknown_dtype_names_the_option():
    with pytest.raises(UserError, match="--state-dtype: invalid dtype 'fp8'"):
        canonical_dtype("fp8", "--state-dtype")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "gpu"])
def test_cuda_device_on_cpu_torch_is_one_line_error(device):
    with pytest.raises(UserError, match="no CUDA device available"):
        check_device(device)


def test_device_spellings():
    assert check_device("cpu") == "cpu"
    assert check_device("auto") in ("cpu", "cuda", "mps")
    with pytest.raises(UserError, match="invalid device 'tpu9'"):
        check_device("tpu9")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "command",
    [
        ["generate", "-m", "tiny-llama", "-d", "gsm8k", "--limit", "1", "-o", "X", "--device", "cuda"],
        ["eval", "-m", "tiny-llama", "-d", "gsm8k", "--limit", "1", "-o", "X", "--device", "gpu"],
        ["mi", "X", "--device", "cuda"],
    ],
)
def test_cuda_on_cpu_torch_exits_2_with_one_line(command, tmp_path):
    result = run(*command, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --device") and "CPU-only build" in lines[0]
    assert not (tmp_path / "X").exists()


def test_dtype_is_the_weights_dtype_and_state_dtype_the_storage(tmp_path):
    out = tmp_path / "run"
    result = run(
        "generate",
        "-m",
        "tiny-llama",
        "-d",
        "gsm8k",
        "--limit",
        "1",
        "--max-new-tokens",
        "2",
        "--layers",
        "-1",
        "--dtype",
        "bfloat16",
        "--state-dtype",
        "float16",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_dtype"] == "bf16" and manifest["dtype"] == "fp16"
    from reasonlens.runs import RunDir

    states = RunDir(out).load_states(0)
    assert [t.dtype for k, t in states.items() if k.startswith("layer.")] == [torch.float16]


def test_renamed_options_still_work_with_a_note():
    notes = []
    argv = rewrite_renamed(
        ["eval", "-m", "x", "--n", "3", "--k=5", "--model-dtype", "bf16", "--layer", "2", "--output-path", "o"],
        notes.append,
    )
    assert argv == [
        "eval",
        "-m",
        "x",
        "--limit",
        "3",
        "--top-words=5",
        "--dtype",
        "bf16",
        "--rr-layer",
        "2",
        "--out",
        "o",
    ]
    assert len(notes) == 4 and "--n is now --limit" in notes[0]
    assert rewrite_renamed(["organisms", "train", "organism-cot", "--steps", "3"], notes.append)[-2] == "--max-steps"
    assert command_path(["organisms", "train", "x"]) == ("organisms", "train")
    # a renamed name of one command is left alone in another (mi --k is peaks, tokens has no --k)
    assert rewrite_renamed(["generate", "--k", "1"], notes.append) == ["generate", "--k", "1"]


def test_an_old_name_with_its_new_name_is_refused(tmp_path):
    """Both would reach the same option and the last would win silently (an old `--dtype fp16 --model-dtype
    bf16` meant fp16 states and bf16 weights; it would store fp32 states)."""
    with pytest.raises(UserError, match="--model-dtype is the old name of --dtype; give --dtype once; .*--state-dtype"):
        rewrite_renamed(["generate", "-m", "x", "--dtype", "fp16", "--model-dtype=bf16"])
    with pytest.raises(UserError, match="eval: --k is the old name of --top-words"):
        rewrite_renamed(["eval", "--top-words", "3", "--k", "5"])
    result = run("generate", "-m", "tiny-llama", "--dtype", "fp16", "--model-dtype", "bf16", "-o", "X", cwd=tmp_path)
    assert result.returncode == 2 and "old name of --dtype" in result.stderr
    assert not (tmp_path / "X").exists()


def test_every_renamed_option_exists_under_its_new_name():
    import typer.main

    from reasonlens.cli import app

    group = typer.main.get_command(app)
    for path, table in RENAMED.items():
        command = group
        for name in path:
            command = command.commands[name]
        names = {opt for param in command.params for opt in param.opts}
        for old, new in table.items():
            assert new in names, (path, new)
            assert old not in names or old == "--dtype", (path, old)


def test_old_option_name_runs_end_to_end(tmp_path):
    result = run(
        "generate",
        "-m",
        "tiny-llama",
        "-d",
        "gsm8k",
        "--n",
        "1",
        "--max-new-tokens",
        "2",
        "--layers",
        "none",
        "--output-path",
        str(tmp_path / "r"),
    )
    assert result.returncode == 0, result.stderr
    assert "generate --n is now --limit" in result.stderr
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["n"] == 1


def test_decode_loop_passes_the_cache_without_deprecation_warnings(tiny_llama):
    from reasonlens.decode import DecodeConfig, decode

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        out = decode(tiny_llama, ["1+1="], DecodeConfig(max_new_tokens=3))
    assert len(out[0].token_ids) == 3


def test_console_has_no_library_noise_and_bars_say_method_and_budget(tmp_path):
    result = run(
        "eval",
        "--model",
        "organism-cot",
        "--limit",
        "1",
        "--max-new-tokens",
        "3",
        "--method",
        "suppress",
        "--words",
        "So",
        "--out",
        str(tmp_path / "sup"),
    )
    assert result.returncode == 0, result.stderr
    for noise in ("Warning", "warn(", "Loading weights", "past_key_values", "it/s]"):
        assert noise not in result.stderr, result.stderr
    assert "eval organism-cot suppress(thinking k=1) budget 3" in result.stderr


def test_python_decode_shows_a_progress_bar(tiny_llama, capsys):
    from reasonlens.decode import DecodeConfig, decode

    decode(tiny_llama, ["1+1=", "2+2="], DecodeConfig(max_new_tokens=2))
    assert "decode" in capsys.readouterr().err
    decode(tiny_llama, ["1+1="], DecodeConfig(max_new_tokens=2), show_progress=False)
    assert capsys.readouterr().err == ""


def test_small_population_bins_are_flagged():
    from reasonlens.analysis.pipeline import population_warnings

    rows = [{"n": 4, "p_value": 0.04}, {"n": 30, "p_value": 0.5}, {"n": 3, "p_value": None}]
    (warning,) = population_warnings(rows)
    assert "1 of 2 bins" in warning and "n=4" in warning
    assert population_warnings([{"n": 25, "p_value": 0.2}]) == []


def _mi_summary(n_peaks: float, words: list) -> dict:
    per_layer = {k: {"stats": {"n_peaks": {"mean": n_peaks}}} for k in ("10", "20", "29", "final")}
    return {"token_layer": "29", "per_layer": per_layer, "thinking_tokens": words}


def test_empty_mi_says_what_to_try_next():
    from reasonlens.analysis.commands import empty_mi_hint

    assert (
        empty_mi_hint(_mi_summary(0.0, []), "iqr") == "no IQR peaks at layer 29; try --peaks topk or --token-layer 20"
    )
    assert "--all-tokens" in empty_mi_hint(_mi_summary(2.0, []), "topk")
    assert empty_mi_hint(_mi_summary(2.0, [{"word": "So"}]), "iqr") is None


def test_no_peaks_message_blames_token_layer_only_when_given(tmp_path):
    from reasonlens.analysis.pipeline import _no_peaks_message

    default = _no_peaks_message("29", False, tmp_path, [], {"mode": "iqr"})
    assert not default.startswith("--") and "no MI peaks at layer 29 (the IQR rule; no layer has peaks" in default
    assert "--peaks topk" in default
    assert _no_peaks_message("5", True, tmp_path, ["29"], {"mode": "topk", "k": 3}).startswith("--token-layer 5: ")


def test_resume_refusal_lists_each_differing_field(tmp_path):
    from reasonlens.runs import RunDir

    run = RunDir(tmp_path / "r")
    base = {
        "command": "generate",
        "model": "m",
        "decode": {"max_new_tokens": 8, "seed": 0, "top_p": 1.0},
        "system": "You are a careful assistant who always reasons step by step before answering.",
    }
    run.start(base)
    changed = {
        **base,
        "decode": {"max_new_tokens": 16, "seed": 1, "top_p": 1.0},
        "system": "You are a careful assistant who always answers at once without any reasoning.",
    }
    with pytest.raises(UserError) as info:
        run.start(changed)
    message = str(info.value)
    assert "decode.max_new_tokens 8 -> 16" in message and "decode.seed 0 -> 1" in message
    assert "top_p" not in message
    old_system = message.split("different 'system': ")[1].split(" -> ")[0]
    assert old_system.endswith(" ...") and len(old_system) < 70
    assert base["system"].startswith(old_system[1:-4] + " ")  # cut between words, not mid-word


def test_did_you_mean_for_models_and_datasets():
    from reasonlens.data import load_problems
    from reasonlens.models import load

    with pytest.raises(UserError, match="unknown model 'smollm2'; did you mean 'smollm2-135m'"):
        load("smollm2")
    with pytest.raises(UserError, match="unknown dataset 'gsm8'; did you mean 'gsm8k'"):
        load_problems("gsm8")


def test_smollm2_hub_id_maps_to_the_bundled_copy(capsys):
    from reasonlens.models import load

    lm = load("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert lm.name == "smollm2-135m" and lm.extra["source"]["path"].endswith("smollm2-135m")
    assert "bundled 'smollm2-135m'" in capsys.readouterr().err


def test_unreachable_hub_fails_fast_with_the_offline_hint(monkeypatch, tmp_path):
    from reasonlens import models

    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(UserError, match="cannot reach huggingface.co .* HF_HUB_OFFLINE=1"):
        models.load("someorg/somemodel")


def test_version_and_doctor():
    import reasonlens

    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"reasonlens {reasonlens.__version__}"
    result = run("doctor", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["versions"]["torch"] == torch.__version__
    assert report["devices"]["cuda_available"] == torch.cuda.is_available()
    assert {m["name"] for m in report["models"]} >= {"organism-cot", "smollm2-135m", "tiny-llama"}
    assert "gsm8k" in report["datasets"] and "reasonlens_cache" in report["caches"]
    text = run("doctor")
    assert text.returncode == 0 and "organism-cot" in text.stdout and "devices: torch" in text.stdout
