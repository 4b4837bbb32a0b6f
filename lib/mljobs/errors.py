"""Errors a user can act on (jobs print them as one clear line and exit non-zero), and the
one way we turn any exception (Python, Py4J, Spark's AnalysisException) into that line."""


class MljobsError(Exception):
    """A problem with the job's input or arguments, reported without a traceback."""

    exit_code = 2


class InputError(MljobsError):
    """Input files are missing, empty, unreadable or lack required columns."""


class BadDataError(MljobsError):
    """Too many malformed rows: the job aborted before writing anything."""

    exit_code = 3


def error_text(exc: BaseException, limit: int = 400) -> str:
    """One line for an error: a Py4J error's Java message, an AnalysisException's own text
    (without the JVM stack Spark appends), else the first line of ``str(exc)``."""
    java = getattr(exc, "java_exception", None)
    if java is not None:
        try:
            text = str(java.toString())
        except Exception:  # the gateway is gone: fall back to Python's text
            text = str(exc)
    else:
        text = str(getattr(exc, "desc", None) or exc)
    text = text.strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first if len(first) <= limit else first[:limit] + " ..."
