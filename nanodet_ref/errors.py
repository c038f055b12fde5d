"""One error type for bad user input: printed as one line, never as a traceback."""


class UserError(Exception):
    """A problem with what the user gave us (a file, a config, an option).

    The message must name the file or option and say what is wrong, on one line.
    """

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
