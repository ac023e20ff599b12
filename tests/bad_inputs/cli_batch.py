"""Run many `reasonlens` command lines in one interpreter (import cost paid once), as the real CLI would.

Usage: python cli_batch.py JOBS.json RESULTS.json, where JOBS.json is a list of {"name", "argv"}. Each job
calls `reasonlens.cli.main(argv)` with file descriptors 1 and 2 redirected, so everything the command
prints (typer, rich, logging, warnings, C libraries) is captured. RESULTS.json maps each name to
{"code": exit code or null, "stderr": str, "exception": traceback text if main() raised instead of
exiting, "timed_out": bool}.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import traceback

JOB_TIMEOUT_S = 180


class JobTimeout(BaseException):
    pass


def _alarm(signum, frame):
    raise JobTimeout()


def run_job(argv: list[str]) -> dict:
    from reasonlens.cli import main

    out_fd, err_fd = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as captured_err, tempfile.TemporaryFile() as captured_out:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(captured_out.fileno(), 1)
        os.dup2(captured_err.fileno(), 2)
        result = {"code": None, "exception": None, "timed_out": False}
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(JOB_TIMEOUT_S)
        try:
            main(argv)
            result["code"] = 0
        except SystemExit as exc:
            result["code"] = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except JobTimeout:
            result["timed_out"] = True
        except BaseException:  # noqa: BLE001 - a raw exception escaping main() is exactly what we look for
            result["exception"] = traceback.format_exc()
        finally:
            signal.alarm(0)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            os.close(out_fd)
            os.close(err_fd)
        captured_err.seek(0)
        result["stderr"] = captured_err.read().decode("utf-8", "replace")
        captured_out.seek(0)
        result["stdout"] = captured_out.read().decode("utf-8", "replace")[-2000:]
    return result


def main() -> None:
    jobs_path, results_path = sys.argv[1], sys.argv[2]
    with open(jobs_path, encoding="utf-8") as handle:
        jobs = json.load(handle)
    results = {}
    for job in jobs:
        results[job["name"]] = run_job(job["argv"])
        with open(results_path, "w", encoding="utf-8") as handle:  # partial results survive a crash
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
