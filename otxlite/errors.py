"""The one exception type that the CLI shows to users as a short paragraph."""


class OtxliteError(Exception):
    """A problem with the user's input: the message says what is wrong and how to fix it."""
