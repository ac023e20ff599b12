"""The README's CLI tour runs as written (with tiny sizes substituted), in a fresh directory."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
# tiny settings: (option, value) replacements; the commands and every other option stay as written
TINY = {
    "--limit": "2",
    "--max-new-tokens": "8",
    "--budgets": "4,8",
    "--recurrence": "1,2",
    "--num-peaks": "3",
    "--top-words": "1",
}
EXTRA = {("organisms", "train"): ["--max-steps", "2", "--eval-n", "2"]}
SKIP = {("demo",)}  # the demo has its own test (tests/test_demo.py)


def tour_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## CLI tour\n\n```bash\n(.*?)```", text, re.S).group(1)
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            assert argv[0] == "reasonlens", line
            commands.append(argv[1:])
    return commands


def tiny(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, token in enumerate(out[:-1]):
        if token in TINY:
            out[i + 1] = TINY[token]
    for path, extra in EXTRA.items():
        if tuple(out[: len(path)]) == path:
            out += extra
    if out[0] in ("generate", "eval", "depth") and "--max-new-tokens" not in out:
        out += ["--max-new-tokens", TINY["--max-new-tokens"]]
    return out


def test_tour_parses_and_uses_only_current_option_names():
    from reasonlens.cli_options import RENAMED, command_path

    commands = tour_commands()
    assert len(commands) >= 15
    for argv in commands:
        old = RENAMED.get(command_path(argv), {})
        assert not [a for a in argv if a in old], argv


@pytest.mark.slow
@pytest.mark.timeout(2400)  # about 20 commands; minutes on an idle machine, longer on a shared one
def test_readme_cli_tour_runs_as_written(tmp_path, monkeypatch):
    from reasonlens.cli import main

    monkeypatch.chdir(tmp_path)
    ran = []
    for argv in tour_commands():
        if tuple(argv[:1]) in SKIP:
            continue
        try:
            main(tiny(argv))
        except SystemExit as exc:
            pytest.fail(f"`reasonlens {' '.join(tiny(argv))}` exited {exc.code} after {len(ran)} commands")
        ran.append(argv[0])
    assert (tmp_path / "report.html").is_file() and (tmp_path / "runs/smol/mi/summary.json").is_file()
    assert (tmp_path / "tokens.jsonl").is_file() and (tmp_path / "runs/pass4/summary.json").is_file()
