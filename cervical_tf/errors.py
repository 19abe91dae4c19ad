"""The project's one exception for bad input, shared by the data side and the model side."""


class DataError(Exception):
    """Bad input that the user must fix: the message names the file (and line) and the fix.

    The CLI prints it and exits with status 2; the server answers it as a 4xx.
    """
