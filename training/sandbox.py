"""The chat model's python tool: run model-written code in a locked-down child process.

The code is untrusted, so it runs in a fresh `python -I -S -B` with an empty environment, a throwaway working
directory, its own process group (killed on timeout) and resource limits. Inside, the child first loads the
allow-listed modules, then locks itself down in layers, because any one layer has known gaps:

- an audit hook (PEP 578) that refuses every event not on a short allow-list: open, sockets, subprocesses,
  os.*, ctypes, marshal, code objects and traceback/generator frames, rlimit changes, loading modules, input.
  Hooks cannot be removed;
- the posix functions the audit hooks never see (mknod, mkfifo, chroot, setuid, ...) are deleted, and
  _imp.create_builtin/create_dynamic disabled so no fresh copy of a C module can be made to get them back;
- rlimits: address space, CPU, no new file descriptors, no file writes, no core files, no forks (non-root);
- `__import__` checks the allow-list, so `import os` fails with a message naming the module.

Audit hooks are not a security boundary against an attacker with a CPython memory-corruption bug (PEP 578
says so), so the child runs inside a kernel boundary too: bubblewrap (Debian's `bubblewrap`), with new network,
pid, ipc, uts and user namespaces (no network but a loopback of its own; the child sees only its own processes, all
killed with it), the system directories and Python's read-only, a tmpfs work directory and /tmp, every
capability dropped and an empty environment. Where bubblewrap is missing or cannot run, run_python refuses with
SandboxUnavailable saying why, unless CRAWL2CHAT_SANDBOX=python allows the in-Python layers alone.
"""

from __future__ import annotations

import functools
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ALLOWED_MODULES = frozenset({
    "math", "cmath", "fractions", "decimal", "statistics", "random", "itertools", "functools", "collections",
    "re", "string", "datetime", "json", "heapq", "bisect", "operator",
})

ISOLATION_ENV = "CRAWL2CHAT_SANDBOX"
ISOLATIONS = ("bubblewrap", "python")  # the kernel boundary and the in-Python layers inside it; the layers alone
_RESULT_MARKER = "\x1esandbox-result:"  # precedes the child's JSON result, after anything the code wrote itself

# Runs as `python -I -S -B -c _CHILD_SOURCE CONFIG_JSON` with the code on stdin. It is a string, not a module
# of this package, so the child never reads a file once locked down and never imports the project.
_CHILD_SOURCE = r'''
import ast, builtins, codecs, json, resource, sys

# What the allowed modules import inside their functions (Counter.copy, re's \N{...}, datetime.strptime);
# loaded now because nothing can be loaded once the audit hook is in.
LAZY_IMPORTS = ("collections.abc", "copy", "unicodedata", "warnings", "_strptime")
IMPORTED_FOR_CALLER = frozenset({"_strptime"})  # C datetime.strptime imports it as if the code did
ENCODINGS = ("ascii", "latin-1", "cp1252", "utf-16", "utf-32")
POSIX_KEPT = frozenset({"urandom", "fspath", "strerror"})  # random.SystemRandom needs urandom
PERMITTED_EVENTS = frozenset({
    "compile", "exec",  # running the code, and its own exec()/eval()
    "builtins.id", "time.sleep",
    "object.__setattr__", "object.__delattr__",  # setting class attributes (functools.total_ordering)
    "sys._getframe",  # collections.namedtuple reads its caller's module name
    "sys.excepthook", "sys.unraisablehook",
    "cpython.PyInterpreterState_Clear", "cpython._PySys_ClearAuditHooks",  # interpreter shutdown
})


def set_limit(kind, value, hard=None):
    _, current_hard = resource.getrlimit(kind)
    hard = value if hard is None else hard
    if current_hard != resource.RLIM_INFINITY:
        value, hard = min(value, current_hard), min(hard, current_hard)
    resource.setrlimit(kind, (value, hard))


class Capture:
    """sys.stdout and sys.stderr: keeps the first `limit` characters and counts the rest."""

    def __init__(self, limit):
        self.limit, self.parts, self.kept, self.total = limit, [], 0, 0

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self.limit - self.kept
        if room > 0:
            self.parts.append(text[:room])
            self.kept += min(len(text), room)
        self.total += len(text)
        return len(text)

    def flush(self):
        pass


def clip(text, total, limit):
    if total <= limit:
        return text
    return f"{text}\n... [{total - limit} more characters truncated]"


def describe(exc):
    """The last line of the traceback Python would print, e.g. 'ZeroDivisionError: division by zero'."""
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ in ("builtins", "__main__") else f"{cls.__module__}.{cls.__qualname__}"
    try:
        text = f"{exc.msg} (line {exc.lineno})" if isinstance(exc, SyntaxError) else str(exc)
    except Exception:
        text = "<exception str() failed>"
    return f"{name}: {text}" if text else name


def lock_down(allowed):
    import _imp, posix
    # Audit hooks never see mknod, mkfifo, chroot, setuid and friends, and as root those create files anywhere.
    os_module = sys.modules["os"]
    for name, value in list(vars(posix).items()):
        if type(value) is type(len) and name not in POSIX_KEPT:
            delattr(posix, name)
            if getattr(os_module, name, None) is value:
                delattr(os_module, name)

    def refuse_load(spec, *args):
        raise ImportError(f"loading {getattr(spec, 'name', spec)!r} is not allowed in the sandbox")

    _imp.create_builtin = _imp.create_dynamic = refuse_load

    # The message layer: the hook below is what stops new modules, and a loaded module stays reachable
    # through attributes (random._os), which is why the dangerous functions are deleted rather than hidden.
    original_import = builtins.__import__
    allowed_list = ", ".join(sorted(allowed))

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        caller = globals.get("__name__") if isinstance(globals, dict) else None
        from_stdlib = isinstance(caller, str) and caller != "__main__" and caller in sys.modules
        top = str.partition(name, ".")[0]
        if not from_stdlib and (level != 0 or top not in allowed and top not in IMPORTED_FOR_CALLER):
            raise ImportError(f"import of {name!r} is not allowed in the sandbox; allowed modules: {allowed_list}")
        return original_import(name, globals, locals, fromlist, level)

    builtins.__import__ = guarded_import
    set_limit(resource.RLIMIT_NOFILE, 0)  # behind the hook: no open, socket or dlopen can get a descriptor

    def audit(event, args):
        if event in PERMITTED_EVENTS:
            return
        detail = next((a for a in args if type(a) in (str, bytes)), None)
        where = "" if detail is None else f" ({repr(detail)[:80]})"
        raise PermissionError(f"{event}{where} is not allowed in the sandbox")

    sys.addaudithook(audit)


def run(code, namespace, out):
    """exec the code; like a REPL, a final expression statement has its repr printed."""
    tree = ast.parse(code, "<sandbox>")
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<sandbox>", "exec"), namespace)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), "<sandbox>", "eval"), namespace)
        if value is not None:
            out.write(repr(value) + "\n")


def main():
    config = json.loads(sys.argv[1])
    code = sys.stdin.buffer.read().decode("utf-8", "replace")
    sys.stdin.close()  # the code gets no input
    set_limit(resource.RLIMIT_AS, config["memory_bytes"])
    # SIGXCPU at the soft limit tells the parent it was the CPU cap; the hard one is a SIGKILL backstop.
    set_limit(resource.RLIMIT_CPU, config["cpu_seconds"], config["cpu_seconds"] + 1)
    set_limit(resource.RLIMIT_FSIZE, 0)
    set_limit(resource.RLIMIT_CORE, 0)
    set_limit(resource.RLIMIT_NPROC, 0)
    for name in (*config["allowed"], *LAZY_IMPORTS):
        __import__(name)
    for encoding in ENCODINGS:
        codecs.lookup(encoding)

    limit, real_stdout = config["max_chars"], sys.stdout.buffer
    captured = Capture(limit)
    sys.stdout = sys.stderr = captured
    lock_down(frozenset(config["allowed"]))
    try:
        run(code, {"__name__": "__main__", "__builtins__": builtins}, captured)
        output = "".join(captured.parts).rstrip("\n")
        result = {"ok": True, "error": None, "output": clip(output, captured.total, limit)}
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from the code are results too
        message = describe(exc)
        result = {"ok": False, "error": type(exc).__name__, "output": clip(message[:limit], len(message), limit)}
    real_stdout.write(("\n" + config["marker"] + json.dumps(result) + "\n").encode("ascii"))
    real_stdout.flush()


main()
'''


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What the python tool hands back; `output` is the text pasted into the conversation."""

    output: str
    ok: bool
    error: str | None  # the exception's class name, "timeout" or "crash"; None when ok


class SandboxUnavailable(RuntimeError):
    """The kernel boundary cannot be set up here; the message says why and what to do."""


def isolation() -> str:
    """CRAWL2CHAT_SANDBOX's value, "bubblewrap" when unset; ValueError naming the variable when it is neither."""
    value = os.environ.get(ISOLATION_ENV, "bubblewrap")
    if value not in ISOLATIONS:
        raise ValueError(f"{ISOLATION_ENV}={value!r}: choose one of {', '.join(ISOLATIONS)}")
    return value


def ensure_available() -> None:
    """SandboxUnavailable now, rather than at the model's first tool call, when bubblewrap is asked for and cannot
    run here."""
    if isolation() == "bubblewrap":
        _bubblewrap_prefix()


def bubblewrap_command(argv: list[str]) -> list[str]:
    """`argv` (its program an absolute path under /usr or Python's prefix) run inside bubblewrap's namespaces.
    SandboxUnavailable when bwrap is not installed or cannot make them here (e.g. user namespaces disabled)."""
    return [*_bubblewrap_prefix(), *argv]


@functools.cache
def _bubblewrap_prefix() -> tuple[str, ...]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(
            "the python tool runs model-written code inside bubblewrap, and bwrap is not installed (apt-get install "
            f"bubblewrap); set {ISOLATION_ENV}=python to run it with the in-Python layers alone")
    prefix = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv",
              "--hostname", "sandbox", "--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev",
              "--tmpfs", "/tmp", "--tmpfs", "/work", "--chdir", "/work"]
    for top in ("/bin", "/lib", "/lib32", "/lib64", "/sbin"):  # merged /usr: symlinks into it
        if os.path.islink(top):
            prefix += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            prefix += ["--ro-bind", top, top]
    for directory in sorted({sys.base_prefix, sys.base_exec_prefix}):
        if not directory.startswith("/usr/"):
            prefix += ["--ro-bind", directory, directory]
    prefix += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache", "--remount-ro", "/"]  # root last: sealed
    probe = subprocess.run([*prefix, _python(), "-I", "-S", "-c", "pass"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise SandboxUnavailable(
            f"bubblewrap cannot isolate the python tool here: {probe.stderr.strip() or probe.returncode}; set "
            f"{ISOLATION_ENV}=python to run it with the in-Python layers alone")
    return tuple(prefix)


def _python() -> str:
    """The base interpreter (not a virtualenv's link to it): the child runs -I -S, so it needs only the stdlib."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def run_python(code: str, timeout_s: float = 5.0, memory_mb: int = 256, max_output_chars: int = 10_000,
               isolated_by: str | None = None) -> ToolResult:
    """Run untrusted Python in a sandboxed child and return what it printed (plus a final expression's repr).
    `isolated_by`: "bubblewrap" or "python" (default: isolation()); SandboxUnavailable when bubblewrap is asked
    for and cannot run."""
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    if memory_mb <= 0:
        raise ValueError(f"memory_mb must be positive, got {memory_mb!r}")
    if max_output_chars <= 0:
        raise ValueError(f"max_output_chars must be positive, got {max_output_chars!r}")
    isolated_by = isolated_by or isolation()
    if isolated_by not in ISOLATIONS:
        raise ValueError(f"isolated_by must be one of {', '.join(ISOLATIONS)}, got {isolated_by!r}")
    config = {
        "memory_bytes": memory_mb * 2**20,
        "cpu_seconds": math.ceil(timeout_s) + 1,
        "max_chars": max_output_chars,
        "allowed": sorted(ALLOWED_MODULES),
        "marker": _RESULT_MARKER,
    }
    argv = [_python(), "-I", "-S", "-B", "-c", _CHILD_SOURCE, json.dumps(config)]
    if isolated_by == "bubblewrap":
        argv = bubblewrap_command(argv)
    # JSON escapes a character to at most 6 ASCII bytes; anything beyond the tail holding the result is
    # junk the code wrote straight to the file descriptor, and keeping it would let it flood our memory.
    tail_bytes = 8 * max_output_chars + 2**16
    with tempfile.TemporaryDirectory(prefix="sandbox-") as workdir:  # bubblewrap's child works in its own tmpfs
        child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 cwd=workdir, env={}, start_new_session=True)
        try:
            raw = _feed_and_collect(child, code, time.monotonic() + timeout_s, tail_bytes)
        finally:
            if child.returncode is None:  # still running, or a zombie whose group id is not yet reusable
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
            child.stdout.close()
    if raw is None or child.returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return ToolResult(output=f"TimeoutError: ran longer than {timeout_s:g} s", ok=False, error="timeout")
    return _parse_result(raw, child.returncode)


def _feed_and_collect(child: subprocess.Popen, code: str, deadline: float, tail_bytes: int) -> bytes | None:
    """Send the code, then read the child's output until it exits: its last tail_bytes, or None on timeout."""
    try:
        with child.stdin:
            child.stdin.write(code.encode("utf-8", "replace"))
    except BrokenPipeError:
        pass  # the child died before reading its code; its exit status says why
    fd, collected = child.stdout.fileno(), bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return None
        chunk = os.read(fd, 2**16)
        if not chunk:
            break
        collected += chunk
        if len(collected) > 2 * tail_bytes:
            del collected[:-tail_bytes]
    try:  # closing stdout is not exiting: the code may have closed it and kept running
        child.wait(timeout=max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        return None
    return bytes(collected[-tail_bytes:])


def _parse_result(raw: bytes, returncode: int) -> ToolResult:
    _, found, payload = raw.rpartition(_RESULT_MARKER.encode())
    if found:
        try:
            result = json.loads(payload.partition(b"\n")[0])
            return ToolResult(output=_printable(str(result["output"])), ok=result["ok"] is True,
                              error=None if result["error"] is None else str(result["error"]))
        except (ValueError, KeyError, TypeError):
            pass  # the code forged a marker and then kept the child from writing its own: a crash
    if b"MemoryError" in raw:  # out of memory where Python could not report it (e.g. writing the result)
        return ToolResult(output="MemoryError", ok=False, error="MemoryError")
    return ToolResult(output=f"SandboxError: the process exited with status {returncode}", ok=False, error="crash")


def _printable(text: str) -> str:
    """Lone surrogates (print('\\udcff')) survive JSON but not encoding into a prompt: replace them."""
    return text.encode("utf-8", "replace").decode("utf-8")
