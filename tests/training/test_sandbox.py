"""run_python runs model-written code in a real locked-down child process: results, limits, and escapes."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from training import sandbox
from training.sandbox import ALLOWED_MODULES, ToolResult, run_python


def test_a_final_expression_is_shown_like_a_calculator():
    assert run_python("2**10") == ToolResult(output="1024", ok=True, error=None)
    assert run_python('"strawberry".count("r")').output == "3"
    assert run_python("x = 1").output == ""


def test_printed_output_comes_back_without_a_trailing_newline():
    assert run_python("print(3)") == ToolResult(output="3", ok=True, error=None)


def test_multi_line_code_prints_then_shows_its_final_expression():
    result = run_python("x = 6\ny = 7\nprint('product')\nx * y")
    assert result == ToolResult(output="product\n42", ok=True, error=None)


def test_allowed_modules_still_work_after_the_lockdown():
    assert run_python("import math\nmath.sqrt(16)").output == "4.0"
    code = """
import collections, datetime, decimal, fractions, functools, json, random, re, statistics
P = collections.namedtuple("P", "x y")
print(P(1, 2), collections.Counter("strawberry").most_common(1))
print(datetime.datetime.strptime("2024-01-02", "%Y-%m-%d").date(), decimal.Decimal("0.1") + decimal.Decimal("0.2"))
print(fractions.Fraction(1, 3) + fractions.Fraction(1, 6), json.dumps({"a": [1]}), statistics.mean([1, 2, 6]))
random.seed(0)
print(random.randint(1, 6), re.sub(r"\\N{LATIN SMALL LETTER A}", "b", "aa"), "é".encode("latin-1"))
functools.reduce(lambda a, b: a * b, range(1, 6))
"""
    result = run_python(code)
    assert result.ok, result
    assert result.output.splitlines() == [
        "P(x=1, y=2) [('r', 3)]", "2024-01-02 0.3", '1/2 {"a": [1]} 3', "4 bb b'\\xe9'", "120",
    ]


@pytest.mark.parametrize("code, module", [
    ("import os", "os"),
    ("import socket", "socket"),
    ("import subprocess", "subprocess"),
    ("import os.path", "os.path"),
    ("from shutil import rmtree", "shutil"),
    ('__import__("os")', "os"),
])
def test_modules_off_the_allow_list_cannot_be_imported(code, module):
    result = run_python(code)
    assert not result.ok
    assert result.error == "ImportError"
    assert f"import of {module!r} is not allowed" in result.output
    assert "math" in result.output, "the message lists what is allowed, so the model can retry"
    assert module.partition(".")[0] not in ALLOWED_MODULES


def test_no_file_can_be_read():
    result = run_python('open("/etc/passwd").read()')
    assert not result.ok
    assert result.output == "PermissionError: open ('/etc/passwd') is not allowed in the sandbox"


def test_no_file_can_be_written_and_the_workdir_is_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the sandbox makes its working directory
    target = tmp_path / "x.txt"
    for code in ('open("x.txt", "w").write("hi")', f'open({str(target)!r}, "w").write("hi")'):
        result = run_python(code)
        assert not result.ok and result.error == "PermissionError", result
        assert "open" in result.output
    assert list(tmp_path.iterdir()) == [], "nothing written, and the sandbox's own directory removed"


def test_the_network_is_unreachable_even_through_the_import_machinery():
    socket_origin = importlib.util.find_spec("_socket").origin  # the C module, loaded without `import`
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        plain = run_python(f"import socket\nsocket.create_connection(('127.0.0.1', {port}))")
        loader_trick = run_python(f"""
import random
sys = random._os.sys
bootstrap, external = sys.modules["_frozen_importlib"], sys.modules["_frozen_importlib_external"]
loader = external.ExtensionFileLoader("_socket", {socket_origin!r})
module = bootstrap.module_from_spec(bootstrap.spec_from_loader("_socket", loader))
module.socket().connect(("127.0.0.1", {port}))
""")
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()
    assert not plain.ok and plain.error == "ImportError"
    assert not loader_trick.ok
    assert loader_trick.output == "ImportError: loading '_socket' is not allowed in the sandbox"


@pytest.mark.parametrize("code", ["while True:\n    pass", "while True:\n    print('spam')"])
def test_a_runaway_loop_is_killed_at_the_timeout(code):
    start = time.monotonic()
    result = run_python(code, timeout_s=1)
    assert time.monotonic() - start < 2.0
    assert result == ToolResult(output="TimeoutError: ran longer than 1 s", ok=False, error="timeout")


@pytest.mark.parametrize("code", ["x = bytearray(2 * 1024**3)", "x = [0] * 2**28"])
def test_allocating_2_gb_fails_under_the_memory_cap(code):
    result = run_python(code)
    assert result == ToolResult(output="MemoryError", ok=False, error="MemoryError")


@pytest.mark.parametrize("code", ['print("x" * 100_000)', "for i in range(100_000):\n    print('x' * 9)"])
def test_huge_output_is_truncated_with_a_marker(code):
    result = run_python(code, max_output_chars=1000)
    assert result.ok
    assert result.output.startswith("x" * 9)
    assert len(result.output) < 1100
    assert result.output.endswith("more characters truncated]")


def test_an_exception_gives_the_last_line_of_its_traceback():
    division = run_python("1/0")
    assert division == ToolResult(output="ZeroDivisionError: division by zero", ok=False, error="ZeroDivisionError")
    nested = run_python("def check(n):\n    raise ValueError(f'bad input {n}')\nprint('before')\ncheck(7)")
    assert nested == ToolResult(output="ValueError: bad input 7", ok=False, error="ValueError")
    assert run_python('import json\njson.loads("{")').output.startswith("json.decoder.JSONDecodeError: Expecting")


def test_a_syntax_error_is_reported():
    result = run_python("def f(:\n    return 1")
    assert not result.ok and result.error == "SyntaxError"
    assert result.output == "SyntaxError: invalid syntax (line 1)"


def test_odd_output_does_not_crash_the_parent():
    result = run_python("import random\nrandom._os.sys.__stdout__.buffer.write(b'\\xff\\xfe')\nprint('\\udcff\\x00ok')")
    assert result.ok
    assert result.output == "?\x00ok"
    result.output.encode("utf-8")  # a lone surrogate would raise here


def test_the_classic_subclasses_escape_to_os_system_fails(tmp_path):
    marker = tmp_path / "pwned"
    result = run_python(f"""
wrap_close = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == "_wrap_close"][0]
wrap_close.__init__.__globals__["system"]("touch {marker}")
""")
    assert result == ToolResult(output="KeyError: 'system'", ok=False, error="KeyError"), "os lost its system()"
    assert not marker.exists()


def test_a_fresh_posix_module_cannot_be_made_through_the_builtin_importer(tmp_path):
    marker = tmp_path / "fifo"
    find_importer = '[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == "BuiltinImporter"][0]'
    fresh = run_python(f'i = {find_importer}\ni.create_module(i.find_spec("posix")).mkfifo({str(marker)!r})')
    reloaded = run_python(f'i = {find_importer}\ni.load_module("posix").mkfifo({str(marker)!r})')
    assert fresh.output == "ImportError: loading 'posix' is not allowed in the sandbox"
    assert not reloaded.ok and reloaded.error == "AttributeError", "the loaded posix has no unaudited functions"
    assert not marker.exists()


def test_no_loaded_module_offers_a_way_to_touch_the_filesystem(tmp_path):
    """Everything in sys.modules is reachable (random._os.sys.modules), so try every file function in it."""
    target = tmp_path / "made"
    result = run_python(f"""
import random
calls = {{"system": ("touch {target}",), "popen": ("touch {target}",), "open": ({str(target)!r}, "w"),
         "mknod": ({str(target)!r},), "mkfifo": ({str(target)!r},), "chroot": ({str(tmp_path)!r},)}}
worked, tried = [], 0
for module in list(random._os.sys.modules.values()):
    for name, args in calls.items():
        function = getattr(module, name, None)
        if callable(function):
            tried += 1
            try:
                function(*args)
                worked.append(module.__name__ + "." + name)
            except Exception:
                pass
print(tried, worked)
""")
    assert result.ok, result
    tried, worked = result.output.split(" ", 1)
    assert int(tried) >= 3, "builtins.open, io.open and os.popen at least were tried"
    assert worked == "[]"
    assert not target.exists()


def test_the_limits_cannot_be_raised_and_frames_cannot_be_walked():
    raise_limit = run_python("""
import random
resource = random._os.sys.modules["resource"]
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
""")
    assert not raise_limit.ok and raise_limit.output.startswith("PermissionError: resource.setrlimit")
    walk_frames = run_python("try:\n    1/0\nexcept ZeroDivisionError as e:\n    e.__traceback__.tb_frame.f_globals")
    assert not walk_frames.ok and "object.__getattr__ ('tb_frame')" in walk_frames.output


def test_bad_limits_are_refused_with_the_value():
    with pytest.raises(ValueError, match="timeout_s must be positive, got 0"):
        run_python("1", timeout_s=0)


needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed (.ci/run installs it)")


def _raw(code: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """`code` in a plain python inside the kernel boundary alone, none of the in-Python layers: what bubblewrap
    stops by itself."""
    argv = sandbox.bubblewrap_command([sandbox._python(), "-I", "-S", "-c", code])
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, start_new_session=True)


@needs_bwrap
def test_inside_bubblewrap_no_socket_reaches_the_hosts_loopback():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        server.settimeout(0.5)
        done = _raw(f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                    "    print('connected')\nexcept OSError as e:\n    print(type(e).__name__)")
        assert done.stdout.strip() in ("ConnectionRefusedError", "OSError", "TimeoutError"), done
        with pytest.raises(TimeoutError):
            server.accept()  # nothing came through


@needs_bwrap
def test_inside_bubblewrap_only_the_work_dir_takes_writes(tmp_path):
    outside = tmp_path / "escaped.txt"
    done = _raw("import os\nopen('/work/ok.txt', 'w').write('fine')\nprint(os.listdir('/work'))\n"
                f"for path in ({str(outside)!r}, '/usr/escaped.txt', '/etc/escaped.txt'):\n"
                "    try:\n        open(path, 'w').write('x')\n        print('wrote', path)\n"
                "    except OSError as e:\n        print(type(e).__name__)\n"
                "print(sorted(k for k in os.environ if k not in ('PWD', 'LC_CTYPE')))")  # Python sets LC_CTYPE itself
    lines = done.stdout.splitlines()
    assert lines[0] == "['ok.txt']" and not any(line.startswith("wrote") for line in lines), done
    assert not outside.exists() and not Path("/usr/escaped.txt").exists() and not Path("/etc/escaped.txt").exists()
    assert lines[1:4] == ["FileNotFoundError", "OSError", "OSError"] and lines[4] == "[]", done  # env cleared


@needs_bwrap
def test_a_fork_bomb_inside_bubblewrap_dies_with_it():
    marker = f"forkbomb-{time.time_ns()}"
    code = f"import os, time\n# {marker}\nfor _ in range(6):\n    os.fork()\ntime.sleep(120)"
    with pytest.raises(subprocess.TimeoutExpired):
        _raw(code, timeout=3)  # subprocess.run kills bwrap; the pid namespace takes all 64 with it
    time.sleep(0.5)
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and marker in _cmdline(p)]
    assert left == []


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


@needs_bwrap
def test_the_python_tool_runs_inside_bubblewrap_by_default(monkeypatch):
    monkeypatch.delenv(sandbox.ISOLATION_ENV, raising=False)
    seen = []
    real = sandbox.bubblewrap_command
    monkeypatch.setattr(sandbox, "bubblewrap_command", lambda argv: seen.append(argv) or real(argv))
    assert run_python("6 * 7").output == "42" and len(seen) == 1
    assert run_python("6 * 7", isolated_by="python").output == "42" and len(seen) == 1


def test_without_bubblewrap_the_tool_is_refused_unless_the_layers_alone_are_allowed(monkeypatch, tmp_path):
    from pipeline.storage import Store
    from training.tools import available_tools

    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    sandbox._bubblewrap_prefix.cache_clear()
    try:
        monkeypatch.delenv(sandbox.ISOLATION_ENV, raising=False)
        with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap.*CRAWL2CHAT_SANDBOX=python"):
            run_python("1 + 1")
        with pytest.raises(sandbox.SandboxUnavailable):  # chat, evaluations and RL stop before the first reply
            available_tools(Store(str(tmp_path)))
        monkeypatch.setenv(sandbox.ISOLATION_ENV, "python")
        assert run_python("1 + 1").output == "2" and set(available_tools(Store(str(tmp_path)))) == {"python"}
        monkeypatch.setenv(sandbox.ISOLATION_ENV, "docker")
        with pytest.raises(ValueError, match="CRAWL2CHAT_SANDBOX='docker'"):
            run_python("1 + 1")
    finally:
        sandbox._bubblewrap_prefix.cache_clear()
