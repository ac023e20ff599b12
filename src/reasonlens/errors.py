"""The one error type for bad user input; the CLI maps it to exit code 2 and one line on stderr."""


class UserError(Exception):
    """Bad input from the user: unknown name, malformed file, invalid argument.

    The message is a single line that names the offending file, field or argument.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class Interrupted(BaseException):
    """The process got SIGINT or SIGTERM; raised from the signal handler the CLI installs.

    A BaseException (like KeyboardInterrupt) so that `except Exception` blocks do not swallow it, but not a
    KeyboardInterrupt, so libraries that turn Ctrl-C into something else (typer returns 130) leave it alone.
    `finally` blocks and context managers still run: temp files are removed and staging folders dropped.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def did_you_mean(name: str, known: list[str]) -> str:
    """`; did you mean 'x'?` for the closest known name (prefix matches first), or ''."""
    import difflib

    lowered = name.lower()
    prefixed = [k for k in known if k.lower().startswith(lowered) or lowered.startswith(k.lower())]
    close = prefixed or difflib.get_close_matches(lowered, known, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
