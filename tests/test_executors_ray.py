"""Ray executor on a local cluster of 2 CPU workers with tiny-llama: results identical to one process."""

import pytest
import torch

ray = pytest.importorskip("ray", reason="the Ray executor test needs Ray: pip install 'reasonlens[ray]'")

from reasonlens.decode import DecodeConfig  # noqa: E402
from reasonlens.interventions.evaluate import EvalSpec, MethodOptions, evaluate  # noqa: E402
from reasonlens.runs import RunDir, RunSpec, execute  # noqa: E402
from reasonlens.runs.executors import RayConfig, RayExecutor  # noqa: E402


@pytest.fixture(scope="module")
def executor():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    with RayExecutor(RayConfig(workers=2)) as ex:
        yield ex
    ray.shutdown()


def comparable(path):
    return [{k: v for k, v in r.items() if k not in ("seconds", "crc")} for r in RunDir(path).results()]


def spec(out, **kw):
    base = dict(
        out=out,
        model="tiny-llama",
        dataset="gsm8k",
        n=6,
        layers="-1",
        decode=DecodeConfig(max_new_tokens=6, batch_size=2),
    )
    base.update(kw)
    return RunSpec(**base)


def test_ray_generate_equals_single_process_and_resumes(tmp_path, tiny_llama, executor):
    execute(spec(tmp_path / "single"), lm=tiny_llama, quiet=True)
    out = tmp_path / "ray"
    summary = executor.run(spec(out), quiet=True)
    run = RunDir(out)
    assert summary["n"] == 6 and run.worker_result_files() == []
    assert comparable(out) == comparable(tmp_path / "single")
    for r in run.results():  # same tokens; states equal up to float rounding (1 torch thread per worker vs 2 here)
        ours, single = run.load_states(r["index"]), RunDir(tmp_path / "single").load_states(r["index"])
        assert ours["token_ids"].equal(single["token_ids"])
        torch.testing.assert_close(ours["layer.3"], single["layer.3"], rtol=1e-4, atol=1e-5)
    # both replicas worked: each sample was written by the worker its chunk was dealt to
    pids = ray.get([a.ping.remote() for a in executor._actors])
    assert len(set(pids)) == 2

    # a cut-off run: the last chunk's records lost, one record stranded in a worker file, one shard gone
    records = run.results()
    run.drop_results({3, 4, 5})
    from reasonlens.runs.io import CheckedAppender

    with CheckedAppender(run.worker_results_path(1)) as app:
        app.append([r for r in records if r["index"] == 3])
    run.state_path(0).unlink()
    untouched = run.state_path(1).stat().st_mtime_ns
    executor.run(spec(out), quiet=True)
    assert comparable(out) == comparable(tmp_path / "single")
    assert run.has_states(0)  # chunk 0 was redone for its lost shard ...
    assert run.state_path(1).stat().st_mtime_ns == untouched  # ... without rewriting the complete sample 1
    from reasonlens.runs.io import read_checked_jsonl

    raw, _ = read_checked_jsonl(run.results_path)
    assert sorted(r["index"] for r in raw) == list(range(6))


def test_ray_refuses_a_different_spec_in_one_line(tmp_path, executor):
    from reasonlens.errors import UserError

    executor.run(spec(tmp_path / "r", n=2), quiet=True)
    with pytest.raises(UserError, match="different 'template'"):
        executor.run(spec(tmp_path / "r", n=2, template="deepseek-math"), quiet=True)


@pytest.mark.slow  # a second run kind on the same cluster; the core check is the generate test
def test_ray_budgeted_eval_equals_single_process(tmp_path, tiny_llama, executor):
    def eval_spec(out):
        return EvalSpec(
            RunSpec(
                out=out,
                model="tiny-llama",
                dataset="gsm8k",
                n=4,
                decode=DecodeConfig(max_new_tokens=8, batch_size=2),
            ),
            method="budget-force",
            options=MethodOptions(budgets=[4, 8], answer_tokens=2),
        )

    local = evaluate(eval_spec(tmp_path / "local"), lm=tiny_llama, quiet=True)
    sharded = evaluate(eval_spec(tmp_path / "ray"), quiet=True, executor=executor)
    assert sharded["accuracy_by_budget"] == local["accuracy_by_budget"]
    for budget in (4, 8):
        assert comparable(tmp_path / "ray" / f"budget-{budget}") == comparable(tmp_path / "local" / f"budget-{budget}")


@pytest.mark.slow  # starts a second pair of replicas for the CLI's own executor
def test_cli_generate_and_mi_gold_encoding_on_ray(tmp_path, tiny_llama, executor):
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from reasonlens.analysis.pipeline import MIConfig
    from reasonlens.analysis.ray_golds import prepare_golds
    from reasonlens.cli import app
    from reasonlens.data import load_problems
    from reasonlens.models import encode_gold

    executor._kill_actors()  # the cluster has 2 CPUs: free them for the CLI's own executor
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "-m",
            "tiny-llama",
            "-d",
            "gsm8k",
            "--limit",
            "4",
            "--max-new-tokens",
            "6",
            "--batch-size",
            "2",
            "--layers",
            "-1",
            "--executor",
            "ray",
            "--workers",
            "2",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    execute(spec(tmp_path / "single", n=4), lm=tiny_llama, quiet=True)
    assert comparable(out) == comparable(tmp_path / "single")

    assert prepare_golds(out, MIConfig(), executor) == 4  # encoded on the replicas
    golds = load_file(out / "mi" / "golds.safetensors")
    for i, problem in enumerate(load_problems("gsm8k", n=4)):
        local = encode_gold(tiny_llama, problem.solution, [3])[3]
        torch.testing.assert_close(golds[f"{i}.3"], local, rtol=1e-4, atol=1e-5)
    assert prepare_golds(out, MIConfig(), executor) == 0  # the cache is reused, nothing re-encoded


def test_ray_gold_encoding_refuses_states_of_another_width_and_writes_nothing(tmp_path, tiny_llama, executor):
    from safetensors.torch import load_file, save_file

    from reasonlens.analysis.pipeline import MIConfig
    from reasonlens.analysis.ray_golds import prepare_golds
    from reasonlens.errors import UserError

    out = tmp_path / "narrow"
    execute(spec(out, n=2), lm=tiny_llama, quiet=True)
    run = RunDir(out)
    for index in range(2):  # states narrower than the model's hidden size (64): a run of some other model
        path = run.state_path(index)
        tensors = load_file(path)
        tensors["layer.3"] = tensors["layer.3"][:, :32].contiguous()
        save_file(tensors, str(path))
    with pytest.raises(UserError, match="hidden size 32.*hidden size 64"):
        prepare_golds(out, MIConfig(), executor)
    assert not (out / "mi").exists()
