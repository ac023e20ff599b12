"""CLI: train-recurrent -> depth -> latent on a tiny model, and user errors."""

from __future__ import annotations

import json

import pytest

from reasonlens.cli import main
from reasonlens.recurrent import RecurrentDepthLM

pytestmark = pytest.mark.usefixtures("single_thread")


def test_train_depth_latent_end_to_end(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"{a} + 1 =", "completion": f" {a + 1}"}) for a in range(8)))
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model": {
                    "n_embd": 32,
                    "n_heads": 4,
                    "vocab_size": 300,
                    "intermediate_size": 48,
                    "block_size": 128,
                    "n_layers_in_prelude": 1,
                    "n_layers_in_recurrent_block": 1,
                    "n_layers_in_coda": 1,
                    "mean_recurrence": 3,
                    "mean_backprop_depth": 2,
                },
                "train": {"steps": 6, "batch_size": 4, "seq_len": 16, "warmup_steps": 2, "checkpoint_every": 3},
            }
        )
    )
    model_dir = tmp_path / "model"
    main(["train-recurrent", "--config", str(config), "--data", str(data), "--out", str(model_dir)])
    assert "trained 6 steps" in capsys.readouterr().out
    assert isinstance(RecurrentDepthLM.from_pretrained(model_dir), RecurrentDepthLM)

    depth_dir = tmp_path / "depth"
    main(
        [
            "depth",
            "--model",
            str(model_dir),
            "--dataset",
            "synthetic-hops:1",
            "--limit",
            "2",
            "--recurrence",
            "1,2",
            "--exit",
            "kl",
            "--max-new-tokens",
            "3",
            "--out",
            str(depth_dir),
        ]
    )
    printed = capsys.readouterr().out
    assert "r=1" in printed and "exit kl" in printed
    summary = json.loads((depth_dir / "summary.json").read_text())
    assert summary["adaptive"]["threshold"] == 5e-4 and set(summary["steps"]) == {"1", "2"}

    latent_dir = tmp_path / "latent"
    main(
        [
            "latent",
            str(model_dir),
            "--text",
            "3 + 1 = 4",
            "--max-steps",
            "4",
            "--star-steps",
            "6",
            "--out",
            str(latent_dir),
        ]
    )
    assert "tokens in 1 samples" in capsys.readouterr().out
    assert (latent_dir / "tokens.parquet").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["depth", "--model", "x", "--dataset", "gsm8k", "--recurrence", "1,a", "--out", "o"], "--recurrence"),
        (["train-recurrent", "--config", "/nonexistent.json", "--data", "d", "--out", "o"], "nonexistent.json"),
    ],
)
def test_user_errors_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
