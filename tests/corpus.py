"""The one harness of the failure corpora: tests/bad_inputs/ (test_bad_inputs.py) and tests/hostile/ (test_hostile.py).

A case is a directory `<corpus>/<name>/` with `case.json` and the files it needs:

    {"args": [...command line...], "expect": [substrings of the stderr line], "code": 2,
     "run": {...edits...}, "run2": {...}, "generate": "<file generator below>", "check": "<post-check below>",
     "changes": ["run", ...], "process": {"signal": ..., "ulimit": ..., "env": ...}, "slow": true, "xfail": "..."}

Placeholders in args and expect: `{case}` (a scratch copy of the case directory), `{run}` / `{run2}` (copies of
a real captured run directory, edited as `run` / `run2` say: `manifest` fields merged, `delete`, `truncate` to
a byte count, `write` text, `shrink_states` to a narrower hidden size), `{scratch}` (an empty folder),
`{outside}` (a folder beside them holding `secret.txt`: what a hostile input may try to reach) and `{out}` (a
path that does not exist).

What every case must show: the exit `code` (default 2); stderr is exactly one line, `error: ...` (or
`interrupted (...)` for 130/143), holding every `expect` substring, and no traceback (`last_line`: a command
stopped mid-run by a signal or a full disk may print progress bars first; then its last line is the message); every folder it was given
(case, scratch, outside, runs) is byte-identical afterwards except the places listed in `changes`; `{out}` is
not created unless `changes` lists "out". A `check` names extra assertions on the result (below).

Cases run in one helper interpreter (cli_batch.py calls `reasonlens.cli.main(argv)` with descriptors 1 and 2
captured) unless they need their own process (`process`): a real signal sent when a file appears, a
`ulimit` (file size, address space), extra environment, or a second command holding the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
HUGE_LINE_BYTES = 100 * 1024 * 1024
HASHED = ("case", "run", "run2", "scratch", "outside")


def load_case(corpus: Path, name: str) -> dict:
    return json.loads((corpus / name / "case.json").read_text(encoding="utf-8"))


def case_names(corpus: Path) -> list[str]:
    return sorted(p.parent.name for p in corpus.glob("*/case.json"))


def tree_hash(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file ('<dir>', '<link> target', '<fifo>' for the others) under root."""
    if not os.path.lexists(root):
        return {}
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            if name == ".lock":
                continue  # the run lock file is bookkeeping, not data: a writer that takes the lock may create it
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = f"<link> {os.readlink(path)}"
            elif path.is_dir():
                out[rel] = "<dir>"
            elif not path.is_file():
                out[rel] = "<special>"
            else:
                digest = hashlib.sha256()
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                out[rel] = digest.hexdigest()
    return out


# -- file generators for cases whose inputs are too big, too binary or too special to commit ------------------
def huge_line(case_dir: Path, scratch: Path, places: dict) -> None:
    """A dataset whose first line is a 100 MB JSON object (written at test time, never committed)."""
    with open(scratch / "huge.jsonl", "wb") as handle:
        handle.write(b'{"id": "huge", "answer": "1", "question": "')
        chunk = b"What is one plus one? " * 4096
        written = 0
        while written < HUGE_LINE_BYTES:
            handle.write(chunk)
            written += len(chunk)
        handle.write(b'"}\n')


def corrupt_model(case_dir: Path, scratch: Path, places: dict) -> None:
    """A real tiny Llama model directory whose weights file is cut short."""
    from reasonlens.models.tiny import tiny_llama

    lm = tiny_llama(layers=1, hidden=32)
    model_dir = case_dir / "model"
    lm.model.save_pretrained(model_dir)
    lm.tokenizer.save_pretrained(model_dir)
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])


def remote_code_model(case_dir: Path, scratch: Path, places: dict) -> None:
    """A model directory that would need its own Python code (auto_map) to load."""
    model_dir = case_dir / "model"
    model_dir.mkdir()
    code = f"from pathlib import Path\nPath({str(scratch / 'remote_code_ran')!r}).write_text('ran')\n"
    (model_dir / "configuration_custom.py").write_text(code)
    (model_dir / "modeling_custom.py").write_text(code)
    (model_dir / "config.json").write_text(
        json.dumps(
            {
                "model_type": "custom-lm",
                "architectures": ["CustomForCausalLM"],
                "auto_map": {
                    "AutoConfig": "configuration_custom.CustomConfig",
                    "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM",
                },
            }
        )
    )


def _run_file(places: dict, rel: str) -> Path:
    return places["run"] / rel


def fifo_manifest(case_dir, scratch, places):
    """A named pipe where the run's manifest.json should be (nobody ever writes to it)."""
    target = _run_file(places, "manifest.json")
    target.unlink()
    os.mkfifo(target)


def fifo_results(case_dir, scratch, places):
    target = _run_file(places, "results.jsonl")
    target.unlink()
    os.mkfifo(target)


def fifo_mi_summary(case_dir, scratch, places):
    target = _run_file(places, "mi/summary.json")
    target.unlink()
    os.mkfifo(target)


def fifo_dataset(case_dir, scratch, places):
    os.mkfifo(scratch / "problems.jsonl")


def fifo_out(case_dir, scratch, places):
    os.mkfifo(scratch / "pipe")


def fifo_token_set(case_dir, scratch, places):
    os.mkfifo(scratch / "tokens.jsonl")


def devzero_manifest(case_dir, scratch, places):
    """manifest.json is a symlink to /dev/zero (an endless file)."""
    target = _run_file(places, "manifest.json")
    target.unlink()
    target.symlink_to("/dev/zero")


def manifest_symlink_outside(case_dir, scratch, places):
    target = _run_file(places, "manifest.json")
    shutil.copy(target, places["outside"] / "manifest.json")
    target.unlink()
    target.symlink_to(places["outside"] / "manifest.json")


def _latent_run(folder: Path, figures: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / "0000_convergence.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    (folder / "summary.json").write_text(
        json.dumps(
            {
                "command": "latent",
                "model": "organism-recurrent",
                "n_samples": 1,
                "n_tokens": 1,
                "label_counts": {"fixed-point": 1},
                "figures": figures,
                "mean_dist_to_star_by_iteration": [1.0, 0.5],
            }
        )
    )


def latent_figure_absolute(case_dir, scratch, places):
    _latent_run(case_dir / "latent", [str(places["outside"] / "secret.txt")])


def latent_figure_dotdot(case_dir, scratch, places):
    depth = len((case_dir / "latent").resolve().parts)
    rel = "/".join([".."] * depth) + str(places["outside"] / "secret.txt")
    _latent_run(case_dir / "latent", ["0000_convergence.png", rel])


def latent_figure_relative_up(case_dir, scratch, places):
    _latent_run(case_dir / "latent", ["../secret_copy.png"])
    (case_dir / "secret_copy.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"SECRET" * 10)


def latent_figure_symlink(case_dir, scratch, places):
    _latent_run(case_dir / "latent", ["0000_convergence.png", "0000_mi_depth.png"])
    (case_dir / "latent" / "0000_mi_depth.png").symlink_to(places["outside"] / "secret.txt")


def latent_figure_symlinked_dir(case_dir, scratch, places):
    _latent_run(case_dir / "latent", ["sub/0000_pca2.png"])
    (case_dir / "latent" / "sub").symlink_to(places["outside"])
    (places["outside"] / "0000_pca2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"SECRET")


def latent_figure_not_png(case_dir, scratch, places):
    _latent_run(case_dir / "latent", ["0000_convergence.png", "0000_heat.png"])
    (case_dir / "latent" / "0000_heat.png").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")


def latent_figure_fifo(case_dir, scratch, places):
    _latent_run(case_dir / "latent", ["0000_convergence.png", "0000_pipe.png"])
    os.mkfifo(case_dir / "latent" / "0000_pipe.png")


def latent_figure_not_string(case_dir, scratch, places):
    _latent_run(case_dir / "latent", [{"path": "/etc/passwd"}])


def latent_figure_nul(case_dir, scratch, places):
    _latent_run(case_dir / "latent", ["0000_convergence.png\u0000.png"])


def mi_plot_symlink(case_dir, scratch, places):
    """RUN/mi holds a .png symlink to a secret outside the run (the report embeds the PNGs of RUN/mi)."""
    (places["run"] / "mi" / "trajectories.png").unlink(missing_ok=True)
    (places["run"] / "mi" / "trajectories.png").symlink_to(places["outside"] / "secret.txt")


def own_results_file(case_dir, scratch, places):
    """A folder of the user's own: results.jsonl (not a run's) and notes, no manifest."""
    folder = scratch / "mine"
    folder.mkdir()
    (folder / "results.jsonl").write_text('{"my": "precious data"}\n{"more": 1}\n')
    (folder / "notes.txt").write_text("keep me\n")


def demo_depth_folder_taken(case_dir, scratch, places):
    """The demo's depth output folder already holds the user's own file: the depth stage must fail."""
    folder = scratch / "demo" / "depth-organism-recurrent"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine\n")


def recurrent_model_index_escape(case_dir, scratch, places):
    """A recurrent model folder whose shard index names a weights file outside the folder."""
    from reasonlens.organisms import organism_dir

    model = case_dir / "model"
    model.mkdir()
    for path in organism_dir("organism-recurrent").iterdir():
        if path.is_file() and path.name != "model.safetensors":
            shutil.copy(path, model / path.name)
    shutil.copy(organism_dir("organism-recurrent") / "model.safetensors", places["outside"] / "stolen.safetensors")
    (model / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"embed": "../../outside/stolen.safetensors"}})
    )


def card_without_dataset(case_dir, scratch, places):
    corrupt = case_dir / "model"
    remote_code_model(case_dir, scratch, places)
    (corrupt / "card.json").write_text('{"name": "someone else\'s organism"}')


def huge_results_line(case_dir, scratch, places):
    """results.jsonl whose first line is 40 MB long (no newline in sight)."""
    with open(places["run"] / "results.jsonl", "wb") as handle:
        handle.write(b'{"index": 0, "completion": "')
        handle.write(b"x" * (40 * 1024 * 1024))


def deep_manifest(case_dir, scratch, places):
    (places["run"] / "manifest.json").write_text("[" * 100000 + "]" * 100000)


def deep_mi_summary(case_dir, scratch, places):
    (places["run"] / "mi" / "summary.json").write_text('{"layers": ' + "[" * 50000 + "]" * 50000 + "}")


def big_int_manifest(case_dir, scratch, places):
    manifest = (places["run"] / "manifest.json").read_text()
    (places["run"] / "manifest.json").write_text(manifest.replace('"offset": 0', '"offset": ' + "9" * 5000))


def _rewrite_record(places, line: int, **fields):
    from reasonlens.runs.io import encode_record

    path = places["run"] / "results.jsonl"
    records = [json.loads(x) for x in path.read_text().splitlines()]
    records[line].update(fields)
    path.write_bytes(b"".join(encode_record(r) for r in records))


def record_n_tokens_text(case_dir, scratch, places):
    _rewrite_record(places, 0, n_tokens="many")


def record_gold_nan(case_dir, scratch, places):
    _rewrite_record(places, 1, gold=float("nan"))


def record_index_huge(case_dir, scratch, places):
    _rewrite_record(places, 0, index=10**30)


def record_seconds_text(case_dir, scratch, places):
    _rewrite_record(places, 0, seconds="fast")


def record_completion_number(case_dir, scratch, places):
    _rewrite_record(places, 0, completion=12)


def nan_states(case_dir, scratch, places):
    """Shard 0 holds NaN hidden states although its record says status ok."""
    from safetensors import safe_open

    shard = places["run"] / "states" / "000000.safetensors"
    with safe_open(shard, "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(shard)
    for key in tensors:
        if key.startswith("layer."):
            tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, shard, metadata=metadata)


def mi_truncated(name: str) -> Callable:
    def generator(case_dir, scratch, places):
        target = places["run"] / "mi" / name
        target.write_bytes(target.read_bytes()[: max(8, target.stat().st_size // 3)])

    generator.__name__ = f"mi_truncated_{name}"
    return generator


def lone_surrogate_dataset(case_dir, scratch, places):
    (scratch / "problems.jsonl").write_text('{"id": "a", "question": "What is \\ud800 1+1?", "answer": "2"}\n')


def deep_dataset(case_dir, scratch, places):
    (scratch / "problems.jsonl").write_text(
        '{"id": "a", "question": "q", "answer": "2", "x": ' + "[" * 100000 + "]" * 100000 + "}\n"
    )


def big_int_dataset(case_dir, scratch, places):
    (scratch / "problems.jsonl").write_text('{"id": "a", "question": "q", "answer": ' + "7" * 5000 + "}\n")


def csv_huge_field(case_dir, scratch, places):
    (scratch / "problems.csv").write_text("id,question,answer\na," + "q" * (200 * 1024) + ",2\n")


def deep_token_set(case_dir, scratch, places):
    (scratch / "tokens.jsonl").write_text(
        '{"word": "wait", "frequency": 1, "token_ids": ' + "[" * 100000 + "]" * 100000 + "}\n"
    )


def big_int_token_set(case_dir, scratch, places):
    (scratch / "tokens.jsonl").write_text('{"word": "wait", "frequency": ' + "1" * 5000 + ', "token_ids": [5]}\n')


def cache_is_file(case_dir, scratch, places):
    (scratch / "cache").write_text("not a folder\n")


def out_parent_is_file(case_dir, scratch, places):
    (scratch / "afile").write_text("plain file\n")


def readonly_run(case_dir, scratch, places):
    """The finished run on read-only media (permissions; root ignores them, so the run is made immutable by
    mounting is not possible here: chmod is used and the case is skipped for root)."""
    for dirpath, dirnames, filenames in os.walk(places["run"]):
        for name in filenames:
            os.chmod(Path(dirpath) / name, 0o444)
        os.chmod(dirpath, 0o555)


def lost_manifest(case_dir, scratch, places):
    (places["run"] / "manifest.json").unlink()
    (places["run"] / "summary.json").unlink()


def dataset_bom_csv(case_dir, scratch, places):
    (scratch / "problems.csv").write_bytes("\ufeffid,question,answer\nbom-1,What is 2+2?,4\n".encode("utf-8"))


GENERATORS: dict[str, Callable] = {
    f.__name__: f
    for f in (
        huge_line,
        corrupt_model,
        remote_code_model,
        fifo_manifest,
        fifo_results,
        fifo_mi_summary,
        fifo_dataset,
        fifo_out,
        fifo_token_set,
        devzero_manifest,
        manifest_symlink_outside,
        latent_figure_absolute,
        latent_figure_dotdot,
        latent_figure_relative_up,
        latent_figure_symlink,
        latent_figure_symlinked_dir,
        latent_figure_not_png,
        latent_figure_fifo,
        latent_figure_not_string,
        latent_figure_nul,
        mi_plot_symlink,
        own_results_file,
        huge_results_line,
        demo_depth_folder_taken,
        recurrent_model_index_escape,
        card_without_dataset,
        deep_manifest,
        deep_mi_summary,
        big_int_manifest,
        record_n_tokens_text,
        record_gold_nan,
        record_index_huge,
        record_seconds_text,
        record_completion_number,
        nan_states,
        lone_surrogate_dataset,
        deep_dataset,
        big_int_dataset,
        csv_huge_field,
        deep_token_set,
        big_int_token_set,
        cache_is_file,
        out_parent_is_file,
        readonly_run,
        lost_manifest,
        dataset_bom_csv,
    )
}
for _name in ("golds.safetensors", "stats.parquet", "mi.parquet", "peaks.parquet", "summary.json"):
    GENERATORS[f"mi_truncated_{_name.split('.')[0]}"] = mi_truncated(_name)


# -- run directories ---------------------------------------------------------------------------------------------
def edit_run(run: Path, edits: dict) -> None:
    if "shrink_states" in edits:
        width = edits["shrink_states"]
        for shard in sorted((run / "states").glob("*.safetensors")):
            from safetensors import safe_open

            with safe_open(shard, "pt") as handle:
                metadata = handle.metadata()
            tensors = {
                k: (v[:, :width].contiguous() if k.startswith("layer.") else v) for k, v in load_file(shard).items()
            }
            save_file(tensors, shard, metadata=metadata)
    if "manifest" in edits:
        manifest = json.loads((run / "manifest.json").read_text())
        manifest.update(edits["manifest"])
        (run / "manifest.json").write_text(json.dumps(manifest, indent=2))
    for rel in edits.get("delete", []):
        target = run / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    for rel, size in edits.get("truncate", {}).items():
        target = run / rel
        target.write_bytes(target.read_bytes()[:size])
    for rel, text in edits.get("write", {}).items():
        (run / rel).write_text(text)


def make_base_run(out: Path, lm, analysed: bool = False) -> Path:
    """A real captured run (tiny Llama, 3 GSM8K problems, layers 1 and final), optionally with RUN/mi."""
    from reasonlens.decode import DecodeConfig
    from reasonlens.runs import RunSpec, execute

    execute(
        RunSpec(
            out=out,
            model="tiny-llama",
            dataset="gsm8k",
            n=3,
            layers="1,final",
            decode=DecodeConfig(max_new_tokens=6, batch_size=2),
        ),
        lm=lm,
        quiet=True,
    )
    if analysed:
        from reasonlens.analysis.pipeline import MIConfig, OutputConfig, analyze_run
        from reasonlens.analysis.stages import PopulationConfig

        config = MIConfig(
            n_boot=20,
            population=PopulationConfig(enabled=False, n_permutations=0),
            output=OutputConfig(plots=True, decode_argmax=False),
        )
        analyze_run(out, config, quiet=True)
    return out


def materialize(corpus: Path, name: str, root: Path, base_runs: dict[str, Path]) -> tuple[list[str], dict[str, Path]]:
    """Scratch copies of the case's files and runs; returns the argv and the places (folders) of the case."""
    spec = load_case(corpus, name)
    case_dir, scratch, outside = root / "case", root / "scratch", root / "outside"
    shutil.copytree(corpus / name, case_dir, symlinks=True)
    scratch.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET-KEY-MATERIAL\n")
    places = {"case": case_dir, "scratch": scratch, "outside": outside, "out": scratch / "out"}
    if "tmpfs" in spec.get("process", {}):
        places["tmpfs"] = root / "tmpfs"
        places["tmpfs"].mkdir()
    for key in ("run", "run2"):
        if key in spec:
            source = base_runs["analysed" if spec.get("analysed") else "plain"]
            shutil.copytree(source, root / key, symlinks=True)
            edit_run(root / key, spec[key])
            places[key] = root / key
    if "generate" in spec:
        GENERATORS[spec["generate"]](case_dir, scratch, places)
    fmt = {k: str(v) for k, v in places.items()}
    argv = [arg.format(**fmt) for arg in spec["args"]]
    return argv, places


def prepare(corpus: Path, names: list[str], root: Path, base_runs: dict[str, Path]) -> dict[str, dict]:
    prepared = {}
    for name in names:
        argv, places = materialize(corpus, name, root / name, base_runs)
        hashed = {k: places[k] for k in HASHED if k in places}
        prepared[name] = {
            "places": places,
            "before": {k: tree_hash(p) for k, p in hashed.items()},
            "argv": argv,
            "spec": load_case(corpus, name),
        }
    return prepared


def run_batch(prepared: dict[str, dict], root: Path) -> None:
    """Run the cases in one helper interpreter (restarted after a case that kills it); fills info['result']."""
    jobs = [{"name": name, "argv": info["argv"]} for name, info in prepared.items()]
    results: dict = {}
    while len(results) < len(jobs):
        pending = [job for job in jobs if job["name"] not in results]
        (root / "jobs.json").write_text(json.dumps(pending))
        (root / "results.json").unlink(missing_ok=True)
        proc = subprocess.run(
            [
                sys.executable,
                str(TESTS / "bad_inputs" / "cli_batch.py"),
                str(root / "jobs.json"),
                str(root / "results.json"),
            ],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if (root / "results.json").exists():
            results.update(json.loads((root / "results.json").read_text()))
        if proc.returncode != 0 and len(results) < len(jobs):
            crashed = next(job["name"] for job in jobs if job["name"] not in results)
            results[crashed] = {
                "code": None,
                "timed_out": False,
                "stderr": proc.stderr[-3000:],
                "stdout": "",
                "exception": f"the helper process died (exit status {proc.returncode})",
            }
    for name, info in prepared.items():
        info["result"] = results[name]
        info["after"] = {k: tree_hash(info["places"][k]) for k in info["before"]}


def run_process(info: dict, timeout: float = 300) -> None:
    """Run one case as its own `python -m reasonlens.cli` process (signals, ulimits, environment, a holder)."""
    spec, places = info["spec"], info["places"]
    options = spec.get("process", {})
    fmt = {k: str(v) for k, v in places.items()}
    env = {**ENV, **{k: v.format(**fmt) for k, v in options.get("env", {}).items()}}
    limits = "".join(f"ulimit -{flag} {value}; " for flag, value in options.get("ulimit", {}).items())
    command = " ".join(_quote(a) for a in [sys.executable, "-m", "reasonlens.cli", *info["argv"]])
    if "tmpfs" in options:
        _mount_tmpfs(places, options["tmpfs"])
    holder = None
    if "hold" in options:  # another process that holds the run lock while this case runs
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, options["hold"].format(**fmt)], env=env, stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "-c", f"{limits}exec {command}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    timed_out = False
    try:
        if "signal" in options:
            _send_when_ready(proc, options["signal"], fmt, timeout)
        stdout, stderr = proc.communicate(timeout=max(1.0, timeout - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        timed_out = True
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    info["result"] = {
        "code": proc.returncode,
        "stderr": stderr,
        "stdout": stdout[-2000:],
        "exception": None,
        "timed_out": timed_out,
        "holder_pid": holder.pid if holder else None,
    }
    info["after"] = {k: tree_hash(places[k]) for k in info["before"]}


MOUNTS: list[Path] = []


def _mount_tmpfs(places: dict, options: dict) -> None:
    """A small tmpfs at `{tmpfs}` (a real full disk / read-only medium); the case is skipped where mounting is
    not allowed. `copy_run` copies the case's run into it as `{tmpfs}/run`; `readonly` remounts it read-only."""
    import pytest

    target = places["tmpfs"]
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={options['size']}", "tmpfs", str(target)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()[:80]}); ulimit -f cases cover full disks")
    MOUNTS.append(target)
    if options.get("copy_run"):
        shutil.copytree(places["run"], target / "run", symlinks=True)
    if options.get("readonly"):
        subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)


def unmount_all() -> None:
    while MOUNTS:
        subprocess.run(["umount", "-l", str(MOUNTS.pop())], capture_output=True)


_HOLDER = """
import sys, time
from pathlib import Path
from reasonlens.runs.io import RunLock
Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
lock = RunLock(sys.argv[1])
print("locked", flush=True)
time.sleep(600)
"""


def _send_when_ready(proc: subprocess.Popen, options: dict, fmt: dict, timeout: float) -> None:
    """Send `options['name']` once the file `options['when']` exists (the command is mid-way), then `after_s`."""
    deadline = time.monotonic() + timeout
    import glob

    marker = options["when"].format(**fmt) if "when" in options else None
    while marker is not None and not glob.glob(marker, include_hidden=True):
        if proc.poll() is not None or time.monotonic() > deadline:
            return
        time.sleep(0.02)
    time.sleep(options.get("after_s", 0))
    if proc.poll() is None:
        proc.send_signal(getattr(signal, options["name"]))


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


# -- the checks ------------------------------------------------------------------------------------------------------
def check_failure(info: dict) -> None:
    """The contract every case must meet (module docstring)."""
    spec, result = info["spec"], info["result"]
    assert not result["timed_out"], "the command hung"
    assert result["exception"] is None, f"main() raised instead of exiting:\n{result['exception'][-3000:]}"
    stderr, code = result["stderr"], result["code"]
    expected_code = spec.get("code", 2)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert code == expected_code, f"exit code {code}, expected {expected_code}; stderr: {stderr[-2000:]}"
    fmt = {k: str(v) for k, v in info["places"].items()}
    if expected_code != 0:
        if spec.get("last_line"):  # stopped mid-run: progress bars and library warnings before the message are fine
            lines = lines[-1:]
        assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {lines[:5]}"
        prefix = spec.get("prefix") or ("interrupted (" if expected_code in (130, 143) else "error: ")
        assert lines[0].startswith(prefix), lines[0]
        for needle in spec["expect"]:
            assert needle.format(**fmt) in lines[0], (needle, lines[0])
    else:
        for needle in spec["expect"]:
            assert needle.format(**fmt) in result["stdout"] + stderr, (needle, result["stdout"][-500:])
    allowed = set(spec.get("changes", []))

    def without_out(key: str, tree: dict) -> dict:  # {out} lies inside {scratch}: judged on its own
        if key != "scratch" or "out" not in allowed:
            return tree
        return {k: v for k, v in tree.items() if k != "out" and not k.startswith("out/")}

    changed = {k for k in info["before"] if without_out(k, info["after"][k]) != without_out(k, info["before"][k])}
    assert changed <= allowed, f"changed: {sorted(changed - allowed)}"
    if "out" not in allowed:
        assert not os.path.lexists(info["places"]["out"]), "a failing command created its output"
    check = spec.get("check")
    if check:
        CHECKS[check](info)


def _run_manifest(info: dict) -> dict:
    return json.loads((info["places"]["out"] / "manifest.json").read_text())


def check_stop_utf8(info: dict) -> None:
    assert _run_manifest(info)["decode"]["stop_strings"] == ["é", "\n"], _run_manifest(info)["decode"]


def check_bom_csv(info: dict) -> None:
    records = [json.loads(x) for x in (info["places"]["out"] / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["bom-1"]


def check_no_secret_in_report(info: dict) -> None:
    for path in info["places"]["scratch"].rglob("*"):
        if path.is_file():
            assert b"SECRET" not in path.read_bytes()


def check_remote_code_not_run(info: dict) -> None:
    assert not (info["places"]["scratch"] / "remote_code_ran").exists()


def check_interrupted_then_consistent(info: dict) -> None:
    """After SIGINT/SIGTERM: the run reads back (no torn record) and no temp or staging file is left."""
    from reasonlens.runs import RunDir

    places = info["places"]
    candidates = [places["out"], places.get("run"), places["tmpfs"] / "run" if "tmpfs" in places else None]
    run = next((c for c in candidates if c is not None and (c / "manifest.json").exists()), places["out"])

    if (run / "manifest.json").exists():
        RunDir(run).results()
    leftovers = [p.name for p in run.rglob("*") if p.name.endswith(".tmp") or ".new" in p.name or ".old" in p.name]
    assert not leftovers, leftovers


def check_mi_not_mixed(info: dict) -> None:
    """SIGTERM during a re-analysis: RUN/mi is still the old analysis, file for file."""
    before = {k: v for k, v in info["before"]["run"].items() if k.startswith("mi")}
    after = {k: v for k, v in info["after"]["run"].items() if k.startswith("mi")}
    assert after == before
    check_interrupted_then_consistent(info)


def check_holder_named(info: dict) -> None:
    assert f"pid {info['result']['holder_pid']}" in info["result"]["stderr"], info["result"]["stderr"]


CHECKS: dict[str, Callable] = {
    "stop_utf8": check_stop_utf8,
    "bom_csv": check_bom_csv,
    "no_secret_in_report": check_no_secret_in_report,
    "remote_code_not_run": check_remote_code_not_run,
    "interrupted_then_consistent": check_interrupted_then_consistent,
    "mi_not_mixed": check_mi_not_mixed,
    "holder_named": check_holder_named,
}
