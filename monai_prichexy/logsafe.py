"""No PHI in log lines: what the front ends (CLI, bundle, Deploy app) let through to their logs.

In an archive, folder and file names carry patient names and ids, and headers carry the rest;
a log is copied around far more freely than the data. The rule of every front end:

* the project's own records (loggers under ``monai_prichexy``) never quote an input path, a
  file or folder name or a header value: an input file is named by its keyed pseudonym (the
  manifest id) or counted;
* records of other libraries (pydicom, Pillow, nibabel, MONAI, Ignite, the MONAI Deploy SDK)
  and their warnings may quote them (a path in a "cannot read" message, a header value in an
  "invalid value for VR" warning), so their text is never shown: below WARNING they are
  dropped (except loggers named ``trusted``), from WARNING on they are replaced by a line that
  names the library and the level only. Warnings raised in this package's code keep their text;
* an uncaught exception prints its traceback; the messages of exceptions raised outside this
  package are withheld.

:func:`install` puts :class:`PhiSafeFilter` on the root logger's handlers (the CLI);
:func:`no_phi_in_logs` does all of it for a whole process (the bundle's ``initialize``, the
Deploy app), a record factory included, so that handlers added later see redacted records.
Standard library only: the CLI calls it before torch or MONAI is imported.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings

__all__ = [
    "PhiSafeFilter",
    "WITHHELD",
    "capture_warnings",
    "install",
    "install_excepthook",
    "no_phi_in_logs",
    "withheld_traceback",
]

OWN_LOGGER = "monai_prichexy"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
WITHHELD = "withheld (its text can quote an input path or header value)"
_WARNING_TEMPLATE = "a %s of %s %s"


def _own(name: str) -> bool:
    return name == OWN_LOGGER or name.startswith(OWN_LOGGER + ".")


class PhiSafeFilter(logging.Filter):
    """Passes the project's own records; drops or redacts everyone else's (see the module doc).

    A record is judged once (the verdict is kept on it, so a second handler or the record
    factory of :func:`no_phi_in_logs` does not judge it again): ``own``, ``trusted`` (a
    ``trusted`` logger below WARNING, without a traceback) or ``library`` (text withheld; shown
    from ``min_level`` on, dropped below).
    """

    def __init__(self, min_level: int = logging.WARNING, trusted: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.min_level = min_level
        self.trusted = tuple(trusted)
        self.withheld = 0

    def _verdict(self, record: logging.LogRecord) -> str:
        if _own(record.name):
            return "own"
        if record.levelno < logging.WARNING and not record.exc_info and any(
            record.name == t or record.name.startswith(t + ".") for t in self.trusted
        ):
            return "trusted"
        if record.msg is not _WARNING_TEMPLATE:  # (that one is built by _show_warning: category and library only)
            what = "a warning" if record.name == "py.warnings" else f"a {record.levelname} message of {record.name.split('.')[0]}"
            record.msg, record.args = "%s %s", (what, WITHHELD)
        record.exc_info = record.exc_text = record.stack_info = None
        return "library"

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, "_prichexy", None)
        if verdict is None:
            verdict = record._prichexy = self._verdict(record)
        if verdict != "library":
            return True
        if record.levelno < self.min_level:
            return False
        self.withheld += 1
        return True


def install(min_level: int = logging.WARNING, all_loggers: bool = False, trusted: tuple[str, ...] = ()) -> PhiSafeFilter:
    """Add one :class:`PhiSafeFilter` to every handler of the root logger and, with
    ``all_loggers``, of every existing logger that has handlers of its own (e.g. MONAI's, which
    do not propagate); returns it."""
    phi_filter = PhiSafeFilter(min_level, trusted)
    loggers = [logging.getLogger()]
    if all_loggers:
        loggers += [logger for logger in list(logging.Logger.manager.loggerDict.values()) if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, PhiSafeFilter) for f in handler.filters):
                handler.addFilter(phi_filter)
    return phi_filter


def _library_of(filename: str) -> str:
    parts = os.path.abspath(filename).split(os.sep)
    for marker in ("site-packages", "dist-packages"):
        if marker in parts[:-1]:
            return parts[parts.index(marker) + 1].split(".")[0]
    return "a library"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    name = getattr(category, "__name__", "Warning")
    if os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep):  # our own: no input data in the text
        logging.getLogger(OWN_LOGGER + ".warnings").warning("%s: %s", name, message)
    else:
        logging.getLogger("py.warnings").warning(_WARNING_TEMPLATE, name, _library_of(filename), WITHHELD)


def capture_warnings() -> None:
    """Route ``warnings`` into logging: this package's own with their text (logger
    ``monai_prichexy.warnings``), everyone else's as category and library only. The warning
    filters (``-q``: ignore) still decide first which warnings are shown at all."""
    warnings.showwarning = _show_warning


def _raised_here(exc: BaseException) -> bool:
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep)


def withheld_traceback(exc: BaseException) -> str:
    """A traceback (chained exceptions included) with the message of every exception raised
    outside this package withheld: the frames name code, a library's message can name an input
    file or quote a header value."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts = []
    for position, item in enumerate(reversed(chain)):
        if position:
            parts.append("\nThe above exception led to the following exception:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(item.__traceback__))
        name = type(item).__qualname__
        module = type(item).__module__
        label = name if module == "builtins" else f"{module}.{name}"
        if _raised_here(item):  # ours: our messages quote no input (set-up errors quote arguments)
            parts.append(f"{label}: {item}\n")
        else:
            parts.append(f"{label}: message {WITHHELD}\n")
    return "".join(parts)


def _excepthook(exc_type, exc, tb) -> None:
    if exc is None or issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    sys.stderr.write(withheld_traceback(exc.with_traceback(tb)))


def install_excepthook() -> None:
    """An uncaught exception prints its traceback with the messages withheld (see
    :func:`withheld_traceback`)."""
    sys.excepthook = _excepthook


def no_phi_in_logs(trusted: tuple[str, ...] | list[str] = ()) -> PhiSafeFilter:
    """All of the above for a process that runs on inputs (the bundle's ``initialize``, the
    Deploy app): the filter on every handler, warnings through it, tracebacks without messages.
    ``trusted``: loggers whose INFO records quote no input (e.g. Ignite's engine)."""
    phi_filter = install(all_loggers=True, trusted=tuple(trusted))
    judge = PhiSafeFilter(logging.NOTSET, tuple(trusted))  # redacts at creation, for handlers added later
    make_record = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        judge.filter(record)
        return record

    if not getattr(make_record, "_prichexy", False):
        factory._prichexy = True
        logging.setLogRecordFactory(factory)
    capture_warnings()
    install_excepthook()
    return phi_filter
