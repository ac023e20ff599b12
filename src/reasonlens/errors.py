"""The one error type for bad user input; the CLI maps it to exit code 2 and one line on stderr."""


class UserError(Exception):
    """Bad input from the user: unknown name, malformed file, invalid argument.

    The message is a single line that names the offending file, field or argument.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
