"""Third-party noise on stderr, kept out of the command line's way unless asked for (``twinseek -v``).

What the libraries behind the embedded default print on their own: TF Lite and mediapipe (C++ logging straight to
file descriptor 2: "INFO: Created TensorFlow Lite XNNPACK delegate", absl's "W0000 ..." lines), protobuf's
deprecation warnings, and transformers' "Loading weights" progress bar on every model load. Everything else on
stderr passes untouched, native output included.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading
import warnings

# Native lines dropped: TF Lite's INFO lines and absl/glog lines of severity INFO or WARNING (E/F lines pass).
NATIVE_NOISE = re.compile(
    rb"^(INFO: (Created TensorFlow Lite|Initialized TensorFlow Lite)"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IW]\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\] )")
ENVIRONMENT = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" bar (read when the hub is imported)
    "TRANSFORMERS_VERBOSITY": "error",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "GLOG_minloglevel": "2",
}

_installed = False


def quiet_third_party() -> None:
    """Quiet the libraries' own output for the rest of this process: environment switches they read (a user's
    own setting wins), warnings filters, and a filter on native stderr when this process writes to its real
    stderr (never under a test runner that captured it)."""
    global _installed
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"google\.protobuf")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"google\.protobuf")
    if _installed or sys.stderr is not sys.__stderr__ or sys.__stderr__ is None:
        return
    try:
        sys.__stderr__.fileno()
    except (OSError, ValueError):  # no file descriptor behind it
        return
    _installed = True
    filter_native_stderr()


def filter_native_stderr(noise: re.Pattern[bytes] = NATIVE_NOISE) -> None:
    """Route file descriptor 2 through a pipe whose reader drops the lines that match ``noise`` and forwards the
    rest as they come. Python's own ``sys.stderr`` keeps writing to the terminal directly (rich still sees a
    terminal and draws its progress bars)."""
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(os.dup(real), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                      errors="backslashreplace")

    def forward() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not noise.match(line))
                if kept:
                    os.write(real, kept)
            if pending and not noise.match(pending):
                os.write(real, pending)

    thread = threading.Thread(target=forward, name="twinseek-stderr", daemon=True)
    thread.start()

    def restore() -> None:  # at exit: fd 2 back to the terminal, and what is still in the pipe forwarded
        os.dup2(real, 2)
        thread.join(2.0)

    atexit.register(restore)
