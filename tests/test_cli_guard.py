"""lvcd.cli.guard: environment faults, interruptions and warnings reach the user as one line."""

from __future__ import annotations

import errno
import warnings

import pytest
import torch
import typer
from typer.testing import CliRunner

from lvcd.cli.guard import guard_app, os_error_message
from lvcd.errors import InputError


def test_os_errors_name_the_path_and_the_remedy():
    full = OSError(errno.ENOSPC, "No space left on device", "/renders/shot.mp4")
    assert os_error_message(full, resumable=True) == (
        "No space left on device (/renders/shot.mp4): the disk is full: free space (or choose another output "
        "folder); then run the same command with --resume to continue where it stopped."
    )
    assert "--resume" not in os_error_message(full, resumable=False)
    read_only = OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x")
    assert "/mnt/ro/x" in os_error_message(read_only, False) and "writable" in os_error_message(read_only, False)


@pytest.mark.parametrize(
    ("raised", "code", "line"),
    [
        (InputError("bad --size"), 2, "error: bad --size"),
        (
            OSError(errno.ENOSPC, "No space left on device", "/d/out.mp4"),
            1,
            "error: No space left on device (/d/out.mp4)",
        ),
        (KeyboardInterrupt(), 130, "error: interrupted (Ctrl-C); run the same command with --resume to continue."),
        (PermissionError(errno.EACCES, "Permission denied", "/root/x"), 1, "error: Permission denied (/root/x)"),
        (
            torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 7.63 GiB of which"
                " 1.12 GiB is free. Including non-PyTorch memory, this process has 6.50 GiB memory in use.\n"
                "Of the allocated memory ... See documentation for Memory Management"
            ),
            1,
            "error: the GPU ran out of memory (2.00 GiB more were needed, 1.12 GiB free); try --offload, "
            "--vae-dtype bf16 or a smaller --size, then run the same command with --resume to continue where it "
            "stopped.",
        ),
        (
            RuntimeError(
                "[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: can't allocate memory: you tried to "
                "allocate 129600000000 bytes. Error code 12 (Cannot allocate memory)"
            ),
            1,
            "error: this machine ran out of memory (129.6 GB more were needed); try --offload, --vae-dtype bf16 or a "
            "smaller --size, then run the same command with --resume",
        ),
        (
            MemoryError(
                "Unable to allocate 149. GiB for an array with shape (15, 100000, 100000, 3) and data type uint8"
            ),
            1,
            "error: this machine ran out of memory (149 GiB more were needed); try --offload, --vae-dtype bf16 or a "
            "smaller --size, then run the same command with --resume",
        ),
    ],
    ids=["user-error", "full-disk", "ctrl-c", "permission", "gpu-out-of-memory", "cpu-out-of-memory", "memory-error"],
)
def test_every_failure_is_one_line_with_its_exit_code(raised, code, line):
    app = typer.Typer()

    @app.command("colorize")
    def command() -> None:
        raise raised

    @app.command("other")
    def other() -> None:  # a second command, so typer keeps the sub-command names
        warnings.warn("a library's warning,\n  over two lines", UserWarning, stacklevel=1)

    guard_app(app)
    result = CliRunner().invoke(app, ["colorize"])
    assert result.exit_code == code and result.output.startswith(line) and result.output.count("\n") == 1
    assert "Traceback" not in result.output
    warned = CliRunner().invoke(app, ["other"])
    assert warned.output == "warning: a library's warning, over two lines\n"


def test_a_reference_of_another_aspect_ratio_is_a_one_line_notice(tmp_path, tiny_weights):
    import numpy as np
    from PIL import Image

    from conftest import TINY_CONFIG
    from lvcd.cli import app

    lineart = tmp_path / "lineart"
    lineart.mkdir()
    for index in range(2):
        Image.new("L", (128, 64), 255).save(lineart / f"{index}.png")
    wide = tmp_path / "wide.png"
    Image.fromarray(np.zeros((64, 256, 3), np.uint8)).save(wide)
    result = CliRunner().invoke(app, [
        "colorize", "--svd", str(tiny_weights["svd"]), "--lvcd", str(tiny_weights["lvcd"]), "--config",
        str(TINY_CONFIG), "--quiet", "-r", str(wide), "-l", str(lineart), "-o", str(tmp_path / "out"), "--steps", "1",
        "--seed", "0",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    notices = [line for line in result.output.splitlines() if "aspect ratio" in line]
    assert len(notices) == 1 and notices[0].startswith("warning: The reference is 256x64")
    assert "UserWarning" not in result.output and "warnings.warn" not in result.output


@pytest.mark.parametrize(
    "args, line",
    [
        (["colorize", "--steps", "0", "a.png", "b"], "error: Invalid value for '--steps': Input should be greater than or equal to 1 (see 'lvcd colorize --help')"),
        (["colorize", "--stepz", "3"], "error: No such option: --stepz (Possible options: --seed, --size, --steps) (see 'lvcd colorize --help')"),
        (["nonexist"], "error: No such command 'nonexist'. (see 'lvcd --help')"),
        (["data", "synth"], "error: Missing argument 'output'. (see 'lvcd data synth --help')"),
        (["train"], "error: Missing option '--config' / '-c'. (see 'lvcd train --help')"),
        (["convert", "--dtype", "fp8"], "error: Invalid value for '--dtype': Value error, 'fp8' is not one of 'fp32', 'fp16', 'bf16'. (see 'lvcd convert --help')"),
    ],
)  # fmt: skip
def test_click_usage_errors_are_one_line_naming_the_help(args, line):
    """click's own parsing errors (range, unknown option or command, missing argument) follow lvcd's error style."""
    from lvcd.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [line]


def test_help_and_no_arguments_still_show_the_help():
    from lvcd.cli import app

    assert CliRunner().invoke(app, ["colorize", "--help"]).output.startswith("Usage: lvcd colorize [OPTIONS]")
    bare = CliRunner().invoke(app, [])
    assert bare.exit_code == 2 and "Commands" in bare.output and "error" not in bare.output


def test_other_runtime_errors_are_not_taken_for_out_of_memory():
    app = typer.Typer()

    @app.command("colorize")
    def command() -> None:
        raise RuntimeError("a bug")

    @app.command("other")
    def other() -> None:
        pass

    guard_app(app)
    result = CliRunner().invoke(app, ["colorize"])
    assert isinstance(result.exception, RuntimeError) and str(result.exception) == "a bug"  # a bug stays a traceback


def test_an_interrupted_batch_or_data_run_says_that_running_it_again_continues():
    app = typer.Typer()

    @app.command("prepare")
    def prepare() -> None:
        raise KeyboardInterrupt

    @app.command("other")
    def other() -> None:
        pass

    guard_app(app)
    result = CliRunner().invoke(app, ["prepare"])
    assert result.exit_code == 130
    assert result.output == "error: interrupted (Ctrl-C); run the same command again to continue where it stopped.\n"


_STOPPED_TWICE = """
import sys, time, weakref
import typer
from lvcd.cli.guard import guard_app, run_app

def say(word):
    print(word, flush=True)

class Held:
    pass

held = Held()
weakref.finalize(held, lambda: (say("finalizing"), time.sleep(0.6), say("finalized")))  # runs at interpreter exit

app = typer.Typer()

@app.command()
def colorize():
    try:
        say("working")
        time.sleep(60)
    finally:
        say("cleaning")
        time.sleep(0.6)
        say("cleaned")

guard_app(app)
run_app(app)
"""


def test_a_second_ctrl_c_during_the_clean_up_or_the_exit_prints_no_traceback(tmp_path):
    """Ctrl-C, then Ctrl-C again while the command cleans up, and again while the interpreter runs its exit finalizers
    (where the auditor's tracebacks came from): the clean-up runs to its end, one line, exit 130."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "stopped_twice.py"
    script.write_text(_STOPPED_TWICE)
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal, not a background job
    )
    seen = []
    try:
        for word in ("working", "cleaning", "finalizing"):
            while word not in seen:
                line = process.stdout.readline()
                assert line, f"the command ended before {word!r}: {seen}, {process.stderr.read()}"
                seen.append(line.strip())
            process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    seen += out.split()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "Exception ignored" not in err, err
    assert [line for line in err.splitlines() if line.strip()] == [
        "error: interrupted (Ctrl-C); run the same command with --resume to continue."
    ]
    assert seen == ["working", "cleaning", "cleaned", "finalizing", "finalized"]


_STOPPED_BY_TWO_AT_ONCE = """
import os, signal, time
import typer
from lvcd.cli.guard import guard_app, run_app

app = typer.Typer()

@app.command()
def colorize():
    both = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, both)
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, both)  # both arrive at once: handled one after the other
    time.sleep(60)

guard_app(app)
run_app(app)
"""


def test_two_signals_arriving_together_stop_the_command_once(tmp_path):
    """SIGTERM and Ctrl-C pending together: the first stops the command, the second is ignored without CPython's
    "Signal 15 ignored due to race condition" traceback (what ignoring it by SIG_IGN gives)."""
    import subprocess
    import sys

    script = tmp_path / "two_at_once.py"
    script.write_text(_STOPPED_BY_TWO_AT_ONCE)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode in (130, 143), done.stderr
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        f"error: interrupted ({'Ctrl-C' if done.returncode == 130 else 'SIGTERM'}); run the same command with "
        "--resume to continue."
    ]


_STOPPED_IN_PROCESS = """
import os, signal, sys, threading
import typer
from lvcd.cli.guard import guard_app

app = typer.Typer()

@app.command()
def colorize():
    os.kill(os.getpid(), signal.SIGINT)
    threading.Event().wait(5)

guard_app(app)
try:
    app()
except SystemExit as done:
    print("exit", done.code, flush=True)
print("sigint", "default" if signal.getsignal(signal.SIGINT) is signal.default_int_handler else "not restored")
print("sigterm", "default" if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else "not restored", flush=True)
"""


def test_an_in_process_caller_stopped_by_ctrl_c_gets_its_handlers_back(tmp_path):
    """A notebook or a script calling the app (not the `lvcd` program): after a Ctrl-C stopped the command, Ctrl-C
    must still stop its next cell (it was left ignored for good, and so in every child process started later)."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "in_process.py"
    script.write_text(_STOPPED_IN_PROCESS)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal, not a background job
    )  # fmt: skip
    assert done.stdout.split("\n")[:3] == ["exit 130", "sigint default", "sigterm default"], done.stdout + done.stderr


def test_weights_folders_from_the_environment_that_are_no_folders_say_which_variable(monkeypatch, tmp_path):
    """$LVCD_METRIC_WEIGHTS=/dev/null said only "weights folder not found: /dev/null"; $LVCD_LINEART_WEIGHTS=/dev/null
    said /dev/null "does not exist"."""
    from lvcd.errors import WeightsError
    from lvcd.lineart.extractor import resolve_weights
    from lvcd.metrics.tools import find_weights

    monkeypatch.setenv("LVCD_METRIC_WEIGHTS", "/dev/null")
    with pytest.raises(InputError, match=r"\$LVCD_METRIC_WEIGHTS /dev/null is not a folder; .* or unset"):
        find_weights(None)
    with pytest.raises(InputError, match=r"--weights-dir .*nowhere does not exist; give the folder"):
        find_weights(tmp_path / "nowhere")
    monkeypatch.setenv("LVCD_LINEART_WEIGHTS", "/dev/null")
    with pytest.raises(WeightsError, match=r"points to /dev/null, which is not a file"):
        resolve_weights("informative")


def test_an_animated_reference_is_said_to_give_its_first_frame(tmp_path):
    """An animated PNG/GIF/WebP as --reference silently gave its first frame."""
    from PIL import Image

    from lvcd.cli.checks import check_image

    path = tmp_path / "ref.png"
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match=r"--reference .*ref\.png holds 3 frames \(or pages\); its first one is used"):
        check_image(path, "--reference")
    frames[0].save(tmp_path / "still.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_image(tmp_path / "still.png", "--reference")
