"""The one exception type that the CLI shows to users as a short paragraph, and the failures from inside the
libraries that are the user's to fix (the machine's limits), turned into such a paragraph."""

from __future__ import annotations

import errno

_OUT_OF_MEMORY = ("can't allocate memory", "out of memory", "cannot allocate memory", "std::bad_alloc")


class OtxliteError(Exception):
    """A problem with the user's input: the message says what is wrong and how to fix it."""


def resource_problem(err: BaseException) -> str | None:
    """The paragraph for a failure caused by the machine's limits (memory, disk), or ``None`` for anything else."""
    first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
    if isinstance(err, MemoryError) or (isinstance(err, RuntimeError)
                                        and any(text in str(err).lower() for text in _OUT_OF_MEMORY)):
        return (f"Out of memory ({first_line}). Lower --param learning_parameters.batch_size or data.input_size "
                "(the model's memory grows with both), use fewer --param learning_parameters.num_workers, or "
                "close other programs; eval and predict need less with smaller images.")
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {err.filename}" if err.filename else ""
        return (f"The disk is full{where} ({first_line}). Free some space or write the run elsewhere with -o; "
                "what was written before stays intact.")
    return None
