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
