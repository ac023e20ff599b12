"""vLLM engine end to end on a GPU: same run layout and grading as the HF engine (skipped without CUDA and vLLM)."""

import importlib.util

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.slow]

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU (vLLM engine integration)", allow_module_level=True)
if importlib.util.find_spec("vllm") is None:
    pytest.skip("needs vLLM: pip install 'reasonlens[vllm]'", allow_module_level=True)


def test_vllm_baseline_and_ttts_runs_match_the_run_format(tmp_path):
    from reasonlens.decode import DecodeConfig
    from reasonlens.engines import EngineSpec
    from reasonlens.interventions.methods import build_plugins
    from reasonlens.runs import RunDir, RunSpec
    from reasonlens.runs.executors import LocalExecutor

    engine = EngineSpec("vllm", gpu_memory_utilization=0.3, max_model_len=2048)
    with LocalExecutor(engine) as executor:
        base = RunSpec(
            out=tmp_path / "base",
            model="smollm2-135m",
            dataset="gsm8k",
            n=4,
            model_dtype="bf16",
            device="cuda",
            decode=DecodeConfig(max_new_tokens=64, batch_size=4),
        )
        summary = executor.run(base)
        run = RunDir(base.out)
        results = run.results()
        assert [r["index"] for r in results] == [0, 1, 2, 3] and summary["n"] == 4
        assert run.manifest["method"] == {"engine": "vllm"} and run.manifest["layers"] == []
        assert all(0 < r["n_tokens"] <= 64 and r["status"] in ("ok", "ungradable") for r in results)
        assert not run.states_dir.exists()

        method = {
            "name": "ttts",
            "words": ["Wait"],
            "prefix": " ",
            "answer_prompt": " Final Answer:",
            "answer_tokens": 8,
        }
        ttts = RunSpec(
            out=tmp_path / "ttts",
            model="smollm2-135m",
            dataset="gsm8k",
            n=4,
            command="eval",
            model_dtype="bf16",
            device="cuda",
            method=method,
            decode=DecodeConfig(max_new_tokens=32, batch_size=4),
        )
        executor.run(ttts, plugins=lambda lm: build_plugins(lm, method, 32))
        for record in RunDir(ttts.out).results():
            # the whole budget is used, then the answer prompt and up to answer_tokens tokens
            assert 32 < record["n_tokens"] <= 32 + 8 + 8 and record["n_forced"] >= 1
