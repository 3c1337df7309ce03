"""Shared fixtures: real WARC files written with warcio, a scratch data root, a Dagster instance; for the training
tests, two tokenizers of one vocabulary size, a chat data root and a model whose next token is scripted."""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# 2 duplicate_pairs partitions a crawl, not 16: the same code, an eighth of the in-process runs per crawl (tests and
# the processes they start read it; `make run` keeps the default)
os.environ.setdefault("CRAWL2CHAT_DEDUP_RANGES", "2")
# `make test` runs two test processes beside the sample run (below). OpenMP threads that spin-wait at each barrier
# make two torch processes of 2 threads each on 2 cores ~15x slower; threads that sleep there (PASSIVE) share the
# cores at no cost alone (measured in SFT: 37 s passive vs 39 s spinning alone, 60 s vs 77 s beside a busy process).
# Read when torch loads libgomp, so before the import below; the processes the tests start inherit it.
assert "torch" not in sys.modules, "torch loaded before OMP_WAIT_POLICY was set"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline.storage import Store
from pipeline.token_io import ALL, TOKENIZER, TOKENIZER_FILES
from pipeline.tokenizer import Tokenizer
from training import sft_data
from training.checkpoint import save_checkpoint
from training.model import GPT, GPTConfig

REPO = Path(__file__).resolve().parents[1]

PROSE = (
    "The Debian project is an association of individuals who have made common cause to create a free operating "
    "system. This operating system is called Debian. An operating system is the set of basic programs and "
    "utilities that make your computer run. At the core of an operating system is the kernel. The kernel is the "
    "most fundamental program on the computer and does all the basic housekeeping and lets you start other "
    "programs. Debian systems currently use the Linux kernel or the FreeBSD kernel. Linux is a piece of software "
    "started by Linus Torvalds and supported by thousands of programmers worldwide. However, work is in progress "
    "to provide Debian for other kernels, primarily for the Hurd. The Hurd is a collection of servers that run on "
    "top of a microkernel to implement different features."
)


def html_page(title: str, paragraphs: list[str]) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>{body}</article></body></html>".encode()


def write_warc(path: Path, records: list[dict], gzip: bool = True) -> Path:
    """records: dicts with url, body (bytes), and optional content_type, status, type ("response"/"revisit")."""
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gzip)
    for i, r in enumerate(records):
        headers = StatusAndHeaders(
            r.get("status", "200 OK"), [("Content-Type", r.get("content_type", "text/html; charset=utf-8"))], protocol="HTTP/1.1"
        )
        record = writer.create_warc_record(
            r["url"],
            r.get("type", "response"),
            payload=io.BytesIO(r["body"]),
            http_headers=headers,
            warc_headers_dict={"WARC-Date": f"2024-01-{i % 28 + 1:02d}T00:00:00Z"},
        )
        writer.write_record(record)
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture
def prose() -> str:
    return PROSE


@pytest.fixture
def good_page() -> bytes:
    return html_page("About Debian", [PROSE, PROSE.replace("Debian", "the project")])


@pytest.fixture
def dagster_instance(tmp_path, monkeypatch):
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


# --- the whole sample run: `crawl2chat run` over the bundled sample, shared by the tests that read it ---
#
# ~10 minutes, mostly training. `make test` runs the tests in two processes (pytest-xdist, --dist loadgroup). One
# test that reads the run is a group of its own, collected first, so one process starts making the run at once while
# the other takes the tests that do not read it; the other readers are collected last, so either process runs them
# once the run is made (under a file lock: whichever asks first makes it, the other waits for it and reads it). A
# plain `pytest` makes it for the first reader.

SAMPLE_CONFIG = REPO / "tests" / "data" / "sample_run.yaml"  # fewer RL, reward-model and RLHF steps, SFT items


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the group marks into the tests' ids
def pytest_collection_modifyitems(session, config, items) -> None:
    readers = [item for item in items if "sample_run" in getattr(item, "fixturenames", ())]
    if readers:
        readers[0].add_marker(pytest.mark.xdist_group("sample_run_maker"))
    others = [item for item in items if "sample_run" not in getattr(item, "fixturenames", ())]
    items[:] = readers[:1] + others + readers[1:]


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory) -> Path:
    """`crawl2chat run` over the whole bundled sample, once per `pytest` (however many xdist processes), in a
    subprocess as a user runs it.

    Returns the folder holding data/ (outputs), home/ (DAGSTER_HOME) and the run's stdout.txt. Its readers only read.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: pytest-N/popen-gwK
    root, failed = shared / "sample_run", shared / "sample_run.failed"
    with open(shared / "sample_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        assert not failed.exists(), failed.read_text()
        if not (root / "stdout.txt").exists():
            shutil.rmtree(root, ignore_errors=True)  # a run killed half-way is made again
            (root / "home").mkdir(parents=True)
            env = {**os.environ, "DAGSTER_HOME": str(root / "home"), "CRAWL2CHAT_DATA_ROOT": str(root / "data")}
            done = run_to_end([sys.executable, "-m", "assets_defs.cli", "run", "--config", str(SAMPLE_CONFIG)],
                              timeout=1800, env=env, cwd=root)
            if done.returncode != 0:
                failed.write_text(done.stderr[-3000:])
            assert done.returncode == 0, done.stderr[-3000:]
            (root / "stdout.txt").write_text(done.stdout)  # written last: the run is whole
    return root


# --- the training tests' objects: two tokenizers of one size, a chat data root, a scripted model ---

TEXT_A = "Who are you? I am a small language model. I don't know who that is. " * 20
TEXT_B = "The kernel schedules processes; the package manager resolves dependencies. " * 20


@pytest.fixture(scope="session")
def two_tokenizers() -> tuple[Tokenizer, Tokenizer]:
    """Trained on different text to the same vocabulary size: models of one shape, whose ids mean other text."""
    a, b = (Tokenizer.train([text], vocab_size=300) for text in (TEXT_A, TEXT_B))
    assert a.n_vocab == b.n_vocab == 300 and a.mergeable_ranks != b.mergeable_ranks
    return a, b


@pytest.fixture
def chat_root() -> Callable[[Path, Tokenizer], tuple[str, str]]:
    """Makes a data root as sft and rl read it: `tokenizer` committed as the tokenizer asset, ten identity and
    "I don't know" conversations, and a tiny base checkpoint (step 1) trained with that tokenizer. Returns the root
    and the tokenizer's sha256 (pipeline/token_io.py's: of tokenizer.tiktoken)."""

    def make(path: Path, tokenizer: Tokenizer) -> tuple[str, str]:
        store = Store(str(path))
        files = tokenizer.to_files()
        for name in TOKENIZER_FILES:
            store.write_bytes(f"{store.partition_dir(TOKENIZER, ALL, ALL)}/{name}", files[name])
        sha = hashlib.sha256(files["tokenizer.tiktoken"]).hexdigest()
        store.commit(TOKENIZER, ALL, ALL, [], {"sha256": sha}, files=list(TOKENIZER_FILES))
        sft_data.save_conversations(store, sft_data.mixture(0, {"identity": 6, "unknown": 4}, str), {})
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tokenizer.n_vocab, depth=1, seq_len=64))
        save_checkpoint(str(path / "checkpoints" / "base"), 1, model, None, {}, {}, tokenizer_sha256=sha)
        return str(path), sha

    return make


class ScriptedModel(torch.nn.Module):
    """A real module, shaped as the engine expects a GPT, whose logits after token a favour `chain[a]` whatever
    came before: greedy or sampled, it writes exactly what a test scripts, tool markers included."""

    def __init__(self, vocab_size: int, chain: dict[int, int]) -> None:
        super().__init__()
        self.config = GPTConfig(vocab_size=vocab_size, depth=1, seq_len=128)
        self.embed_tokens = torch.nn.Embedding(vocab_size, vocab_size)  # row a: the logits after token a
        with torch.no_grad():
            self.embed_tokens.weight.zero_()
            for a, b in chain.items():
                self.embed_tokens.weight[a, b] = 50.0  # e^-50: no other token is ever sampled

    def forward(self, idx: torch.Tensor, targets=None, cache=None, rows=None) -> torch.Tensor:
        return self.embed_tokens(idx)


@pytest.fixture
def scripted_model() -> Callable[..., ScriptedModel]:
    """scripted_model(vocab_size, *sequences): a ScriptedModel that follows each sequence, token after token."""

    def make(vocab_size: int, *sequences: Sequence[int]) -> ScriptedModel:
        chain: dict[int, int] = {}
        for sequence in sequences:
            for a, b in zip(sequence, sequence[1:]):
                if chain.setdefault(a, b) != b:
                    raise ValueError(f"token {a} is followed by both {chain[a]} and {b} in the script")
        return ScriptedModel(vocab_size, chain)

    return make


def run_module(module: str, *args: str, nproc: int = 1, log: Path | None = None):
    """A training script as a user runs it: python -m, or torchrun for several processes. With `log`, it is started
    in the background with its output going there, and the Popen is returned."""
    launcher = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    command = [*launcher, "-m", module, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same arithmetic however many processes share the cores
    if log is not None:
        with open(log, "w") as f:
            return subprocess.Popen(command, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    done = run_to_end(command, timeout=300, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def run_to_end(command: list[str], timeout: float, **popen) -> subprocess.CompletedProcess:
    """subprocess.run's capture, in a session of its own: past the timeout every process it started is killed too
    (a Dagster run's training subprocess, torchrun's workers), not left to hold the cores for the tests after."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          **popen) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


# --- a page server as a user starts it: `crawl2chat serve` or `label`, on a free loopback port ---


class PageServer:
    """`crawl2chat COMMAND ...` in its own session (so a kill reaches uvicorn and nothing else), on a free port of
    127.0.0.1; `url` once /`ready` answers. kill() is SIGKILL: nothing gets to flush or say goodbye."""

    def __init__(self, command: str, *args: str, ready: str, cwd: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"{command}-{self.port}.log"
        with open(self.log, "w") as f:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "assets_defs.cli", command, "--port", str(self.port), *args], cwd=cwd,
                stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"})
        self._wait(ready)

    def _wait(self, ready: str, timeout: float = 60) -> None:
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + ready, timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"the server did not answer in {timeout} s: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def page_server(tmp_path):
    """page_server(command, *args, ready="/api/status"): a started PageServer, killed after the test."""
    started: list[PageServer] = []

    def start(command: str, *args: str, ready: str = "/api/status") -> PageServer:
        started.append(PageServer(command, *args, ready=ready, cwd=tmp_path))
        return started[-1]

    yield start
    for server in started:
        server.kill()


# --- a PostgreSQL cluster of its own: Debian's binaries, initdb in a temp dir, 127.0.0.1 on a free port ---


@pytest.fixture
def postgres_url():
    """postgresql://crawl:secret@127.0.0.1:PORT/postgres of a fresh cluster (trust auth: any password is accepted,
    so tests can check that the one in the URL is never printed), stopped after the test. As root, the cluster
    runs as the postgres user (initdb refuses root)."""
    import glob
    import pwd
    import shutil
    import socket
    import tempfile

    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not binaries:
        raise AssertionError("PostgreSQL is missing: apt-get install postgresql (make test installs it)")
    initdb, pg_ctl = (f"{binaries[-1]}/{name}" for name in ("initdb", "pg_ctl"))
    root = Path(tempfile.mkdtemp(prefix="crawl2chat-pg-"))
    user = None
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
        user = "postgres"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = {"user": user, "capture_output": True, "text": True, "cwd": root, "timeout": 120}
    done = subprocess.run([initdb, "-D", str(root / "data"), "-U", "crawl", "-A", "trust", "--no-sync"], **run)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([pg_ctl, "-D", str(root / "data"), "-l", str(root / "log"), "-w", "-o",
                           f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off", "start"], **run)
    assert done.returncode == 0, done.stderr + (root / "log").read_text()
    yield f"postgresql://crawl:secret@127.0.0.1:{port}/postgres"
    subprocess.run([pg_ctl, "-D", str(root / "data"), "-m", "immediate", "stop"], **run)
    shutil.rmtree(root, ignore_errors=True)
