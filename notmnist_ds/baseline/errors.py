"""The error type of the baseline trainer."""


class BaselineError(Exception):
    """Invalid input or option; the message names the value and the fix."""
