"""Exceptions that the command line turns into exit codes and readable messages."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130


class InputError(Exception):
    """Bad input from the user: the message names the input, what is wrong, and what to do.

    The command line exits with code 2 and prints the message.
    """


class Cancelled(Exception):
    """The user asked the run to stop (SIGINT/SIGTERM); the command line exits with 130."""
