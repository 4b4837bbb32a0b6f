"""Errors a user can act on: jobs print them as one clear line and exit non-zero."""


class MljobsError(Exception):
    """A problem with the job's input or arguments, reported without a traceback."""

    exit_code = 2


class InputError(MljobsError):
    """Input files are missing, empty, unreadable or lack required columns."""


class BadDataError(MljobsError):
    """Too many malformed rows: the job aborted before writing anything."""

    exit_code = 3
