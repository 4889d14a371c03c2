"""The one exception type that reaches users as a clean one-line message."""


class UserError(Exception):
    """Bad input or bad params: printed as one line (no traceback) and the stage exits non-zero.

    The message must name what is wrong and where: a file and line, or a params key.
    """

    exit_code = 2

