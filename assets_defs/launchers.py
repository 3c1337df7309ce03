"""Where base_model's training process runs, picked by CRAWL2CHAT_PIPES when the Definitions load.

- subprocess (default): dagster's PipesSubprocessClient; context and messages through temporary files, the messages
  read by WholeLineFileReader below.
- stderr: PipesStderrClient below; the context in an environment variable and the messages as JSON lines on the
  process's stderr. That is the wire protocol of PipesK8sClient, whose pods' logs carry the messages, so a run
  through it shows the training script works on a GPU pod; it also carries Pipes over anything that relays a
  remote process's stderr (`ssh gpu-box ...`, Slurm's `srun ...`, `docker run ...`).
- k8s: dagster-k8s's PipesK8sClient (the k8s extra), as PipesK8sNodesClient below: a stage's `image` names the
  pod's image and `nproc` its GPUs; with `nnodes` > 1 the pod is torchrun's node 0 and a Job of nnodes - 1 pods
  joins it (assets_defs/k8s.py).

CRAWL2CHAT_EXECUTOR picks where a run's steps run (`executor` below): in the run's own process(es), or each step in
a Kubernetes Job of its own (dagster-k8s's k8s_job_executor).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import dagster as dg
from dagster_pipes import PIPES_PROTOCOL_VERSION_FIELD, PipesDefaultMessageWriter

LAUNCHERS = ("subprocess", "stderr", "k8s")
EXECUTORS = ("multiprocess", "in_process", "k8s")
# torchrun's rendezvous over several pods: node 0 (the Pipes pod) hosts the store at this port, reached by the name
# a headless Service gives it; the name reaches the command through this variable (Kubernetes expands $(NAME) in a
# container's command from its env)
RDZV_PORT = 29400
RDZV_HOST_ENV = "CRAWL2CHAT_RDZV_HOST"
RDZV_TIMEOUT_S = 1800  # how long node 0 waits for the others: GPU pods queue for nodes and pull a ~10 GB image


class WholeLineFileReader(dg.PipesMessageReader):
    """Messages from a temporary file the process appends JSON lines to, handed on a whole line at a time.

    Dagster's own file readers tail the file with readline, which returns what is there at the end of the file: a
    long message (a checkpoint report carries the loss history) caught while the process is still writing it is
    parsed half-written, the reader thread dies, and every later message of the run is lost (seen in `make test`:
    base_model's last checkpoint never became a materialization). This reader keeps a partial line until its end
    arrives."""

    @contextmanager
    def read_messages(self, handler) -> Iterator[dict]:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "messages")
            open(path, "w", encoding="utf-8").close()
            finished = threading.Event()
            thread = threading.Thread(target=self._read, args=(path, handler, finished), daemon=True)
            thread.start()
            try:
                yield {PipesDefaultMessageWriter.FILE_PATH_KEY: path}
            finally:
                finished.set()  # the process has ended: whatever it wrote is in the file
                thread.join()

    @staticmethod
    def _read(path: str, handler, finished: threading.Event) -> None:
        pending = ""
        try:
            with open(path, encoding="utf-8") as f:
                while True:
                    chunk = f.readline()
                    if chunk:
                        pending += chunk
                        if pending.endswith("\n"):
                            handler.handle_message(json.loads(pending))
                            pending = ""
                    elif finished.is_set():
                        break
                    else:
                        time.sleep(0.01)
        except Exception:
            handler.report_pipes_framework_exception("WholeLineFileReader reader thread", sys.exc_info())
            raise

    def no_messages_debug_text(self) -> str:
        return "Messages are read from a temporary file, one JSON object a line."


class _StderrMessageReader(dg.PipesMessageReader):
    """Tells the process to write its messages to stderr; PipesStderrClient feeds it the lines."""

    handler = None

    @contextmanager
    def read_messages(self, handler) -> Iterator[dict]:
        self.handler = handler
        try:
            yield {PipesDefaultMessageWriter.STDIO_KEY: PipesDefaultMessageWriter.STDERR}
        finally:
            self.handler = None

    def handle_line(self, line: str) -> bool:
        """True when the line was a Pipes message (and was handled), False for an ordinary log line."""
        try:
            message = json.loads(line)
        except ValueError:
            return False
        if not isinstance(message, dict) or PIPES_PROTOCOL_VERSION_FIELD not in message:
            return False
        self.handler.handle_message(message)
        return True

    def no_messages_debug_text(self) -> str:
        return "Messages are read from the process's stderr, one JSON object a line."


class PipesStderrClient(dg.PipesClient):
    """Runs a command with Pipes over its stderr: context from the environment, messages read line by line from
    stderr (other lines are passed through to ours, so the compute log keeps them)."""

    def __init__(self, env: Mapping[str, str] | None = None, termination_timeout_seconds: float = 20):
        self.env = dict(env or {})
        self.termination_timeout_seconds = termination_timeout_seconds

    def run(self, *, context, command: Sequence[str], extras=None,
            env: Mapping[str, str] | None = None) -> dg.PipesClientCompletedInvocation:
        reader = _StderrMessageReader()
        with dg.open_pipes_session(context=context, context_injector=dg.PipesEnvContextInjector(),
                                   message_reader=reader, extras=extras) as session:
            process = subprocess.Popen(
                list(command), env={**os.environ, **self.env, **(env or {}), **session.get_bootstrap_env_vars()},
                stderr=subprocess.PIPE, text=True, bufsize=1, errors="replace")
            try:
                for line in process.stderr:
                    if not reader.handle_line(line.rstrip("\n")):
                        sys.stderr.write(line)
                process.wait()
            except dg.DagsterExecutionInterruptedError:
                context.log.info("[pipes] interrupted: sending SIGINT to the training process")
                process.send_signal(signal.SIGINT)
                process.wait(timeout=self.termination_timeout_seconds)
                raise
            if process.returncode != 0:
                raise dg.DagsterPipesExecutionError(f"{command[0]} ... exited with code {process.returncode}")
        return dg.PipesClientCompletedInvocation(session)


def pipes_client(name: str) -> dg.PipesClient:
    """The Pipes client a launcher name stands for; ValueError naming the choices for any other name."""
    if name == "subprocess":
        return dg.PipesSubprocessClient(message_reader=WholeLineFileReader())
    if name == "stderr":
        return PipesStderrClient()
    if name == "k8s":
        try:
            from assets_defs.k8s import PipesK8sNodesClient
        except ImportError as e:
            raise ValueError("CRAWL2CHAT_PIPES=k8s needs dagster-k8s: pip install '.[k8s]'") from e
        return PipesK8sNodesClient()
    raise ValueError(f"CRAWL2CHAT_PIPES={name!r}: expected one of {', '.join(LAUNCHERS)}")


def executor(name: str) -> dg.ExecutorDefinition:
    """The executor a name stands for (CRAWL2CHAT_EXECUTOR): `multiprocess`, Dagster's default (a run's steps in
    processes of the run's own pod; in-process under dg.materialize), or `k8s`, dagster-k8s's k8s_job_executor (each
    step a Kubernetes Job with the run launcher's image, env and secrets, so the steps of one run spread over the
    cluster). `in_process` runs a run's steps one after another in the run's process: no process start a step (a
    few seconds each: every one loads the code location), for small shards on a small machine. ValueError naming
    the choices for any other name."""
    if name == "multiprocess":
        return dg.multi_or_in_process_executor
    if name == "in_process":
        return dg.in_process_executor
    if name == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as e:
            raise ValueError("CRAWL2CHAT_EXECUTOR=k8s needs dagster-k8s: pip install '.[k8s]'") from e
        return k8s_job_executor
    raise ValueError(f"CRAWL2CHAT_EXECUTOR={name!r}: expected one of {', '.join(EXECUTORS)}")


def torchrun(nproc: int, nnodes: int = 1) -> list[str]:
    """`python -m torch.distributed.run` with its flags: --standalone on one node; on several, static rendezvous
    at node 0 (`$(CRAWL2CHAT_RDZV_HOST)`, set in each pod's env) and the node's rank from PET_NODE_RANK in its env.
    Static, not c10d: c10d ignores --node-rank and ranks nodes by host name, and global rank 0, the one that reports
    to Dagster, must be in the Pipes pod whose log Dagster reads."""
    if nnodes == 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}", f"--nproc_per_node={nproc}",
            "--rdzv-backend=static", f"--rdzv-endpoint=$({RDZV_HOST_ENV}):{RDZV_PORT}",
            f"--rdzv-conf=timeout={RDZV_TIMEOUT_S}"]

