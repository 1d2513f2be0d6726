"""Every command's last line of defence: no traceback ever reaches the user.

:func:`guarded` wraps a command: a user error (:class:`lvcd.errors.LVCDError`) prints its one line and exits 2 (or the
error's own ``exit_code``); an environment fault (a full disk, a read-only or missing folder, a denied permission)
prints one line with the path and the remedy and exits 1, as does the GPU running out of memory (with the settings
that need less); Ctrl-C and SIGTERM stop the command cleanly (outputs are
atomic, so nothing partial is left) and exit 130 / 143. :func:`guard_app` wraps every command of the app.
:class:`OneLineUsageErrors` (the app's click group) prints click's own usage errors (an unknown option, a value out of
range, a missing argument) as one line too, instead of click's usage block.

    >>> guard_app(app)   # doctest: +SKIP
"""

from __future__ import annotations

import errno
import functools
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import typer
import typer.core
from typer.core import TyperGroup

from lvcd.errors import LESS_MEMORY, Interrupted, LVCDError, out_of_memory, out_of_memory_text

# Commands that continue an interrupted job with --resume (the remedy after a full disk or an interruption).
RESUMABLE = frozenset({"colorize", "train", "train-vae"})
RERUNNABLE = frozenset({"batch", "prepare", "synth"})  # the same command again continues them, no --resume option

_REMEDIES = {
    errno.ENOSPC: "the disk is full: free space (or choose another output folder)",
    errno.EDQUOT: "the disk quota is exhausted: free space (or choose another output folder)",
    errno.EROFS: "the folder is on a read-only file system: choose a writable output location",
    errno.EACCES: "permission denied: choose a location you may write, or fix its permissions",
    errno.EPERM: "the operation is not permitted there (an immutable file or folder?): choose another location",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "the path is a folder where a file is needed: choose another path",
    errno.ENOENT: "the file or folder does not exist: check the path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) and run it again",
}


def os_error_message(err: OSError, resumable: bool) -> str:
    """One line for an environment fault: what failed, on which path, and what to do."""
    path = err.filename if err.filename is not None else "?"
    if err.filename2 is not None:
        path = f"{path} -> {err.filename2}"
    remedy = _REMEDIES.get(err.errno, "fix the cause and run it again")
    line = f"{err.strerror or err} ({path}): {remedy}"
    if resumable and err.errno in (errno.ENOSPC, errno.EDQUOT):
        line += "; then run the same command with --resume to continue where it stopped"
    return line + "."


# What needs less accelerator memory, for the commands where running out of it is likely.
_LESS_MEMORY = {
    "colorize": LESS_MEMORY,
    "batch": LESS_MEMORY,
    "ui": "--offload or --vae-dtype bf16",
    "train": "a smaller train.batch_size with more train.gradient_accumulation_steps (--set)",
    "train-vae": "a smaller batch or crop size (--set)",
}


def out_of_memory_message(err: BaseException, name: str, resumable: bool) -> str:
    line = out_of_memory_text(err, _LESS_MEMORY.get(name, "smaller inputs"))
    if resumable:
        line += ", then run the same command with --resume to continue where it stopped"
    return line + "."


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as the user should see it: ``warning: ...`` on one line, no source line of lvcd's."""
    typer.echo(f"warning: {' '.join(str(message).split())}", err=True)


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so that every clean-up on the way out runs."""


def _ignore_signal(signum, frame) -> None:
    """Does nothing. A Python handler rather than SIG_IGN: a signal that arrived together with the first one is still
    pending when this is installed, and CPython reports a pending signal whose handler became SIG_IGN with a traceback
    ("Signal 15 ignored due to race condition")."""


def _ignore_further_stops() -> None:
    """Ignore Ctrl-C and SIGTERM from now on (main thread only). Once a command is stopping, a second Ctrl-C would land
    in its clean-up or in the interpreter's exit finalizers (weakref / atexit) and print a traceback there; the clean-up
    must run to its end so the work directory stays resumable. SIGKILL still stops a hung exit."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _ignore_signal)
        signal.signal(signal.SIGTERM, _ignore_signal)


def interruption(err: BaseException) -> tuple[str, int] | None:
    """("Ctrl-C", 130) or ("SIGTERM", 143) when ``err`` is the user stopping the command, else None."""
    if isinstance(err, KeyboardInterrupt):
        return "Ctrl-C", 130
    if isinstance(err, _Terminated):
        return "SIGTERM", 143
    return None


def guarded(command: Callable, name: str) -> Callable:
    """``command`` with one-line errors and clean interruption (see the module docstring)."""
    resumable = name in RESUMABLE

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        signalled = []  # the signal that stopped the command, if one did

        def stop(signum, frame) -> None:
            signalled.append(signum)
            _ignore_further_stops()  # before raising: a second signal must not interrupt the way out
            raise KeyboardInterrupt() if signum == signal.SIGINT else _Terminated()

        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, stop)
            previous[signal.SIGINT] = signal.getsignal(signal.SIGINT)
            if previous[signal.SIGINT] is signal.default_int_handler:  # not when ignored (a background job) or custom
                signal.signal(signal.SIGINT, stop)
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _one_line_warning
                return command(*args, **kwargs)
        except Interrupted as err:
            _ignore_further_stops()
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None
        except LVCDError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(getattr(err, "exit_code", 2)) from None
        except OSError as err:
            typer.echo(f"error: {os_error_message(err, resumable)}", err=True)
            raise typer.Exit(1) from None
        except RuntimeError as err:
            if not out_of_memory(err):
                raise
            typer.echo(f"error: {out_of_memory_message(err, name, resumable)}", err=True)
            raise typer.Exit(1) from None
        except MemoryError as err:  # Python's or numpy's allocator: a traceback before
            typer.echo(f"error: {out_of_memory_message(err, name, resumable)}", err=True)
            raise typer.Exit(1) from None
        except (KeyboardInterrupt, _Terminated) as err:
            _ignore_further_stops()
            what, code = interruption(err)
            hint = "; run the same command with --resume to continue" if resumable else "; nothing was written"
            if name in RERUNNABLE:
                hint = "; run the same command again to continue where it stopped"
            typer.echo(f"error: interrupted ({what}){hint}.", err=True)
            raise typer.Exit(code) from None
        finally:
            # A signal stops the `lvcd` program: Ctrl-C and SIGTERM stay ignored through its exit, by the system now
            # (SIG_IGN survives the interpreter's shutdown, where Python's own handlers give way to the default:
            # killed), any signal pending till here delivered to the no-op first. Otherwise (the command finished, an
            # in-process caller such as a notebook, or one that raised KeyboardInterrupt itself) the caller's handlers
            # come back.
            if signalled and _PROCESS_ENDS_AFTER:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            else:
                for signum, handler in previous.items():
                    if handler is not None:  # None: a handler installed from outside Python, not restorable
                        signal.signal(signum, handler)

    return wrapper


# Set by :func:`run_app` (the `lvcd` program): the process ends when the command does, so a command stopped by a signal
# leaves Ctrl-C and SIGTERM ignored through the interpreter's exit. In-process callers (a notebook, a test invoking
# the app) get their own handlers back instead: Ctrl-C must still stop their next cell.
_PROCESS_ENDS_AFTER = False


def run_app(app: typer.Typer) -> None:
    """Run ``app`` as the whole program (the `lvcd` entry point): see ``_PROCESS_ENDS_AFTER``."""
    global _PROCESS_ENDS_AFTER
    _PROCESS_ENDS_AFTER = True
    app()


def guard_app(app: typer.Typer) -> None:
    """Wrap every registered command of ``app`` (and of its sub-apps) in :func:`guarded`."""
    for info in app.registered_commands:
        if info.callback is not None and not getattr(info.callback, "_lvcd_guarded", False):
            info.callback = guarded(info.callback, info.name or info.callback.__name__)
            info.callback._lvcd_guarded = True
    for group in app.registered_groups:
        if group.typer_instance is not None:
            guard_app(group.typer_instance)


# The click that typer runs on: vendored as typer._click since typer 0.2x, the click package before.
_click = getattr(typer.core, "_click", None) or __import__("click")
_NoArgsIsHelp = getattr(_click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


class OneLineUsageErrors(TyperGroup):
    """The app's root group: click's usage errors as ``error: <what> (see 'lvcd <command> --help')``, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NoArgsIsHelp as err:  # `lvcd` alone: the help, as click shows it
            err.show()
            sys.exit(err.exit_code)
        except _click.exceptions.UsageError as err:
            where = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
            typer.echo(f"error: {' '.join(err.format_message().split())}{where}", err=True)
            sys.exit(err.exit_code)
        except _click.exceptions.ClickException as err:
            typer.echo(f"error: {' '.join(err.format_message().split())}", err=True)
            sys.exit(err.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)  # an int only from typer.Exit / ctx.exit: commands return None
