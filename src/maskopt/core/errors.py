"""One error type for problems a user can fix (bad params, bad files, missing inputs).

Stage scripts and the CLI print these as a single line and exit non-zero; anything
else is a bug and keeps its traceback.
"""


class MaskoptError(Exception):
    """A problem with the user's input, reported as one clear line."""
