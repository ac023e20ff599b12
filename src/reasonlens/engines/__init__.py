"""Generation engines: the HF decode loop (every method, hidden-state capture) and vLLM (generation-only methods).

The HF engine is `reasonlens.decode` itself. The vLLM engine (`vllm_engine.py`, `pip install 'reasonlens[vllm]'`)
runs the methods that only change which tokens are generated (each method declares its engines,
`Method.engines`: baseline, suppress, nowait, ttts, budget-force).
Hidden-state capture, Representation Recycling and the MI analysis need the model's layers and stay on HF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from reasonlens.errors import UserError

ENGINES = ("hf", "vllm")


@dataclass(frozen=True)
class EngineSpec:
    """Which engine decodes, and the vLLM settings (ignored by the HF engine)."""

    name: str = "hf"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None

    def validate(self) -> "EngineSpec":
        if self.name not in ENGINES:
            raise UserError(f"--engine must be one of {', '.join(ENGINES)}, got {self.name!r}")
        if self.tensor_parallel_size < 1:
            raise UserError(f"--tensor-parallel-size must be >= 1, got {self.tensor_parallel_size}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise UserError(f"--gpu-memory-utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        return self


def check_engine_support(
    engine: str, method: str = "baseline", capture_layers: bool = False, command: str = "generate"
) -> None:
    """Refuse, in one line, a combination the engine cannot run (before anything is loaded)."""
    if engine not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine != "vllm":
        return
    if capture_layers:
        raise UserError(
            "--engine vllm cannot capture hidden states (--layers); use --engine hf, or --layers none "
            "for a generation-only run"
        )
    if command == "mi":
        raise UserError("mi reads hidden states and runs on the HF engine only; drop --engine vllm")
    if engine not in method_engines(method):
        raise UserError(
            f"--method {method} needs the model's layers and runs on the HF engine only; "
            f"--engine vllm runs {', '.join(engine_methods('vllm'))}"
        )


def method_engines(method: str) -> tuple[str, ...]:
    """The engines a registered method declares it runs on (`Method.engines`)."""
    from reasonlens.interventions import get_method

    return tuple(get_method(method).engines)


def engine_methods(engine: str) -> list[str]:
    """The registered methods that run on `engine`."""
    from reasonlens.interventions import get_method, method_names

    return [name for name in method_names() if engine in get_method(name).engines]


def load_engine_model(
    engine: EngineSpec, model: str, dtype: str, device: str, trust_remote_code: bool, revision: str | None = None
) -> tuple[Any, Callable | None]:
    """(model handle, chunk-decoder factory for `execute`, None for the HF decode loop)."""
    if engine.name == "vllm":
        if revision:
            raise UserError("--revision is not supported with --engine vllm yet; pass a local snapshot directory")
        from reasonlens.engines.vllm_engine import VllmModel, vllm_decoder

        handle = VllmModel(
            model,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            tensor_parallel_size=engine.tensor_parallel_size,
            gpu_memory_utilization=engine.gpu_memory_utilization,
            max_model_len=engine.max_model_len,
        )
        return handle, vllm_decoder
    from reasonlens.models import load

    return load(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code, revision=revision), None


__all__ = ["ENGINES", "engine_methods", "method_engines", "EngineSpec", "check_engine_support", "load_engine_model"]
