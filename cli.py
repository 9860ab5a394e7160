"""What every command-line tool of the project does with a failure (``super_resolve.py``,
``evaluate.py``, ``create_data_lists.py``, ``export.py``, ``train.py``), and the parser, options
and output checks they share (:func:`tool_parser`, :func:`add_common_options`,
:func:`add_path_option`, :func:`check_output_file`).

``sys.exit(cli.run("evaluate.py", main))`` runs ``main(argv)`` and turns any exception that
escapes it into ONE line on stderr, ``<prog>: error: <message>``, and exit status
:data:`EXIT_FAILURE`; the traceback is shown only with ``--debug`` on the command line (then the
exception propagates as usual, also from a tool's own handlers that report through
:func:`fail`). Ctrl-C gives :data:`EXIT_INTERRUPTED` and one line. Warnings
(``warnings.warn``, e.g. "EXIF orientation applied", "only the first frame is used") are printed
as one line each, ``<prog>: warning: <message>``, instead of Python's two-line format. SIGTERM
(``kill``, ``timeout``, job schedulers) is handled like Ctrl-C: one line, temporary files
removed, exit status :data:`EXIT_TERMINATED`.

A tool's own expected errors (a missing file, a bad setting) are best reported by ``main``
itself, with the setting or file named; this wrapper is the safety net for the rest, so that no
traceback ever reaches a user who did not ask for one.
"""
import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import warnings
import zipfile
from pathlib import Path

DEBUG_FLAG = "--debug"
"""Command-line flag that shows the full traceback of a failure (removed before ``main`` sees
the arguments)."""

_debug = False          # set by run(): --debug was given

EXIT_FAILURE = 1        # the tool failed (or some of its inputs did); see the error line
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
EXIT_TERMINATED = 143   # SIGTERM (128 + 15): what kill, timeout and job schedulers send


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM, so that it unwinds as on
    Ctrl-C: temporary files are removed (``utils.atomic_write``), files already written are
    kept, and :func:`run` prints one line."""


def _on_sigterm(signum, frame):
    raise Terminated()


def one_line(exc):
    """``exc`` as one line: its message's first non-empty line, with the type name when the
    message alone would not say what happened (KeyError('x') -> "KeyError: 'x'")."""
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    if not text or isinstance(exc, (KeyError, TypeError, AttributeError, IndexError,
                                    ZeroDivisionError, AssertionError)):
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text


def debugging():
    """True inside :func:`run` when ``--debug`` was given."""
    return _debug


def fail(prog, exc, prefix=""):
    """A tool's handler of an expected error: under ``--debug`` re-raise ``exc`` (the caller
    must call this inside its ``except`` block); else print ``<prog>: error: <prefix><one line>``
    on stderr and return :data:`EXIT_FAILURE`."""
    if _debug:
        raise exc
    print(f"{prog}: error: {prefix}{one_line(exc)}", file=sys.stderr)
    return EXIT_FAILURE


def run(prog, main, argv=None):
    """Run ``main(argv)`` (``argv`` default ``sys.argv[1:]``) under the policy of the module
    docstring; returns the exit status (``main``'s return value, 0 for None)."""
    global _debug
    for stream in (sys.stdout, sys.stderr):   # a file name that is not UTF-8 must not end the
        if hasattr(stream, "reconfigure"):    # run after its work (strict-UTF-8 terminals)
            stream.reconfigure(errors="backslashreplace")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    if not debug:
        warnings.showwarning = lambda message, *args, **kwargs: print(
            f"{prog}: warning: {message}", file=sys.stderr)
    main_thread = threading.current_thread() is threading.main_thread()   # signals: main only
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        rc = main(argv)
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"{prog}: {what} (files already written are kept)", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    except SystemExit:
        raise                          # argparse's usage errors: already one line, status 2
    except Exception as exc:           # noqa: BLE001 -- the point of this wrapper
        if debug:
            raise
        print(f"{prog}: error: {one_line(exc)} (run with {DEBUG_FLAG} for the traceback)",
              file=sys.stderr)
        return EXIT_FAILURE
    finally:
        _debug = False
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0 if rc is None else int(rc)


def device_setting(resolve, spec):
    """``resolve(spec)`` (e.g. ``runtime.resolve_device``) with its failure as a ValueError that
    names ``--device`` and the choices (torch's own text lists twenty device types)."""
    try:
        return resolve(spec)
    except (RuntimeError, ValueError) as e:
        if "CUDA" in str(e):       # a device name, but no such GPU here: torch's line says it
            raise ValueError(f"--device {spec!r}: {one_line(e)}") from e
        raise ValueError(f"--device {spec!r}: not a device name; use auto, cpu, cuda or "
                         f"cuda:N") from e


def tool_parser(doc):
    """The argument parser of a tool whose ``--help`` shows its module docstring ``doc`` with
    the line breaks as written."""
    return argparse.ArgumentParser(description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_path_option(parser, flag, help, required=False):
    """Add the option ``flag`` naming a file or folder: its value a ``pathlib.Path``, None when
    it is not given (unless ``required``)."""
    parser.add_argument(flag, type=Path, default=None, required=required, help=help)
    return parser


def add_common_options(parser, device="cpu"):
    """The options every inference tool shares: ``--device`` (default ``device``), ``--quiet``
    (no progress bars) and the ``--debug`` flag (tracebacks)."""
    parser.add_argument("--device", default=device,
                        help=f"auto | cpu | cuda | cuda:N (default: {device})")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of a failure")
    return parser


def is_json_file(path):
    """True when ``path`` holds a JSON document (a previous ``--json`` output may be replaced)."""
    try:
        with open(path, encoding="utf-8") as f:
            json.load(f)
        return True
    except (OSError, ValueError):
        return False


def is_torch_file(path):
    """True when ``path`` is a ``torch.save`` file (a zip archive): a previous export."""
    return zipfile.is_zipfile(path)


def _inside(path, folder):
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def check_output_file(path, option, inputs=(), replaceable=None, kind="output"):
    """Before any work: may a tool write its output file ``path`` (given as ``option``)?

    Refused, with a ValueError / OSError naming ``option`` and what to do, and nothing written:
    a folder; one of the tool's ``inputs`` (files, or folders whose existing files are all
    inputs: a checkpoint, a test image, the data root); an existing file that
    ``replaceable(path)`` does not recognise as an earlier output of this ``kind`` (e.g.
    :func:`is_json_file` for ``--json``: an image or a checkpoint is never overwritten with
    JSON); a place that cannot be written (its folder is created and probed).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name, e.g. "
                         f"{path / ('result' + (path.suffix or '.json'))}")
    target = path.resolve()
    for item in map(Path, inputs):
        item = item.resolve()
        if target == item or (item.is_dir() and target.exists() and _inside(target, item)):
            raise ValueError(f"{option} {path} is one of the inputs ({item}): writing the "
                             f"{kind} there would replace it; give another file name")
    if path.exists() and replaceable is not None and not replaceable(path):
        raise ValueError(f"{option} {path} exists and is not a {kind} file; refusing to "
                         f"overwrite it: give another name, or delete it first")
    try:
        probe_writable(path.parent)
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(13, "the file is read-only")
    except OSError as e:
        raise OSError(f"{option} {path}: cannot write there ({e.strerror or e}); choose a "
                      f"writable location") from e


def probe_writable(folder):
    """Create ``folder`` when missing and write (then remove) a temporary file in it: OSError
    when files cannot be written there (read-only, a file in the way, a full disk)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=folder, prefix=".write_test.")
    os.close(fd)
    os.unlink(probe)
