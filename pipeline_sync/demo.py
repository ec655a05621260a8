"""`make demo`: a local S3 endpoint seeded with Front50 pipelines, and the Dagster UI on top of it.

Everything runs on 127.0.0.1 and lives under --home (default .demo/): moto's S3 server runs in
this process, `dagster dev` in a process group of its own. Ctrl-C (or SIGTERM, or closing the
terminal) stops all of it; if this process is killed outright, `dagster dev` gets SIGTERM from
the kernel (Linux), so nothing outlives the demo.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from pipeline_sync.errors import PipelineSyncError

if TYPE_CHECKING:
    import dagster as dg
    from werkzeug.serving import BaseWSGIServer

    from pipeline_sync.store.s3 import S3Store

PROJECT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
BUCKET = "front50-demo"
LOCK_FILE = "demo.lock"
START_SECONDS = 180.0
STOP_SECONDS = 25.0
# Inherited settings that could point the demo at real AWS or another Dagster instance.
FOREIGN_PREFIXES = ("AWS_", "PIPELINE_SYNC_", "DAGSTER_")
INSTANCE_CONFIG = """\
# Written by `make demo`: a local instance that sends nothing anywhere.
telemetry:
  enabled: false
# A launched run leaves the queue within a second (Dagster's default checks every 5 s).
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
"""


class DemoError(Exception):
    """Something stops the demo from starting; the message says what to do."""


def note(message: str) -> None:
    """To stderr, unless the terminal is gone (closing it is one way to stop the demo)."""
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr, flush=True)


# -- ports -------------------------------------------------------------------------------------


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port left in TIME_WAIT by the previous demo is free; a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def busy_port_message(port: int, option: str) -> str:
    return f"port {port} on {HOST} is already in use; free it or choose another with {option}."


def check_ports(ports: Mapping[str, int]) -> None:
    if len(set(ports.values())) < len(ports):
        raise DemoError(f"{' and '.join(ports)} must be different ports.")
    for option, port in ports.items():
        if not port_free(port):
            raise DemoError(busy_port_message(port, option))


# -- signals -----------------------------------------------------------------------------------

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupts:
    """Ctrl-C, SIGTERM and SIGHUP become one KeyboardInterrupt; later ones never cut the clean-up short.

    Handlers are installed explicitly because a shell that starts us in the background without
    job control leaves SIGINT ignored, and children would inherit that (dagster dev then ignores
    SIGTERM too). While a child is being registered (`deferred`), a signal waits until it is.
    """

    def __init__(self) -> None:
        self._deferred = 0
        self._pending = False
        self._done = False

    def install(self) -> Interrupts:
        for signum in STOP_SIGNALS:
            if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                continue  # started under nohup: closing the terminal is not meant to stop us
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._done:
            note("(still stopping; please wait)")
        elif self._deferred:
            self._pending = True
        else:
            self._done = True
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1
        if not self._deferred and self._pending and not self._done:
            self._done = True
            raise KeyboardInterrupt

    def stop_raising(self) -> None:
        """From now on a signal only prints a note: called before cleaning up."""
        self._done = True


# -- the demo's home ---------------------------------------------------------------------------


def claim_home(home: Path) -> IO[str]:
    """Lock home for this demo (the lock goes when the process does) and empty everything else."""
    home.mkdir(parents=True, exist_ok=True)
    lock = open(home / LOCK_FILE, "a+")  # noqa: SIM115 - held open for the demo's lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        owner = lock.read().strip() or "unknown"
        lock.close()
        raise DemoError(
            f"another demo (pid {owner}) is running from {home}; stop it first, "
            "or give this one its own --home."
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    for entry in home.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return lock


def demo_env(home: Path, s3_url: str) -> dict[str, str]:
    """The settings every part of the demo shares (on top of the inherited environment)."""
    no_file = str(home / "no-aws-config")
    return {
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3_url,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": no_file,
        "AWS_SHARED_CREDENTIALS_FILE": no_file,
        "PIPELINE_SYNC_BUCKET": BUCKET,
        "PIPELINE_SYNC_ROOT": "front50",
        "PIPELINE_SYNC_ENDPOINT_URL": s3_url,
        "PIPELINE_SYNC_CACHE_DIR": str(home / "cache"),
        "PIPELINE_SYNC_CATALOG": str(PROJECT / "catalog"),
        "PIPELINE_SYNC_TEMPLATES": str(PROJECT / "templates"),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
    }


def use_env(settings: Mapping[str, str]) -> None:
    """Make this process run with exactly the demo's AWS, pipeline-sync and Dagster settings."""
    for name in [n for n in os.environ if n.startswith(FOREIGN_PREFIXES)]:
        del os.environ[name]
    os.environ.update(settings)


def write_home_files(home: Path, settings: Mapping[str, str]) -> Path:
    """dagster.yaml (telemetry off) and env.sh (the settings, for a second shell); returns env.sh."""
    dagster_home = Path(settings["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(INSTANCE_CONFIG)
    env_file = home / "env.sh"
    lines = ["# The demo's settings: `source` this in another shell to use its bucket and instance."]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in sorted(settings.items())]
    # The virtualenv's bin (not resolved: a venv's python is a link out of it), so `pipeline-sync`
    # and `dagster` are the demo's own in that shell.
    lines.append(f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"')
    env_file.write_text("\n".join(lines) + "\n")
    return env_file


# -- S3 ----------------------------------------------------------------------------------------


class S3Server:
    """moto's S3 HTTP server on a thread of this process: it cannot outlive the demo."""

    def __init__(self, port: int) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        app = DomainDispatcherApplication(create_backend_app)
        try:
            # Bound here, not on the thread, so a busy port is an error now, not a hang.
            self._server: BaseWSGIServer = make_server(
                HOST, port, app, threaded=True, request_handler=MotoRequestHandler
            )
        except OSError as exc:
            raise DemoError(f"cannot serve S3 on {HOST}:{port} ({exc.strerror}).") from exc
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-s3", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


# -- seed and first reconcile ------------------------------------------------------------------


def seed_bucket() -> dict[str, str]:
    from pipeline_sync.demo_seed import seed
    from pipeline_sync.store.s3 import S3Settings, S3Store

    store = S3Store(S3Settings.from_env())
    return seed(store, PROJECT / "catalog", PROJECT / "templates")


def first_reconcile(instance: dg.DagsterInstance) -> None:
    """Add one partition per catalog target and plan every pipeline, as the nightly schedule does."""
    from pipeline_sync.definitions import defs
    from pipeline_sync.defs.partitions import PARTITIONS_NAME
    from pipeline_sync.rendering import Sources

    workspace = Sources.load(PROJECT / "catalog", PROJECT / "templates")
    instance.add_dynamic_partitions(PARTITIONS_NAME, sorted(workspace.catalog.targets))
    result = defs.resolve_job_def("reconcile_job").execute_in_process(
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )
    if not result.success:
        raise DemoError(f"the first reconcile run ({result.run_id}) failed; see the log above.")


def plan_statuses(instance: dg.DagsterInstance) -> dict[str, str]:
    """Each partition's plan status, as the last reconcile left it."""
    from pipeline_sync.defs.partitions import PARTITIONS_NAME
    from pipeline_sync.defs.state import read_plan_state

    keys = instance.get_dynamic_partitions(PARTITIONS_NAME)
    return {k: v.split(":", 1)[0] for k, v in read_plan_state(instance, keys).items()}


def plan_digest(instance: dg.DagsterInstance, key: str) -> str:
    from pipeline_sync.defs.state import PLAN_ASSET, latest_metadata

    return str(latest_metadata(instance, PLAN_ASSET, key).get("plan_digest", "<digest>"))


# -- dagster dev -------------------------------------------------------------------------------

# Runs between fork and `dagster dev`, then becomes it. It restores SIGINT and SIGTERM: started
# in the background without job control, a parent has SIGINT ignored, children inherit that, and
# dagster dev then ignores SIGTERM too. On Linux it also asks the kernel to SIGTERM dagster dev
# when its parent dies, even by SIGKILL. A shim rather than preexec_fn: the demo has threads
# (moto), and preexec_fn is unsafe with threads.
_EXEC_STOPPABLE = """\
import ctypes, os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
except (AttributeError, OSError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit("the process that started dagster dev has exited")
os.execv(sys.argv[2], sys.argv[2:])
"""


def dagster_dev_argv(port: int) -> list[str]:
    dagster = Path(sys.executable).parent / "dagster"
    command = [str(dagster)] if dagster.exists() else [sys.executable, "-m", "dagster"]
    dev = ["dev", "-w", "workspace.yaml", "-h", HOST, "-p", str(port)]
    return [sys.executable, "-c", _EXEC_STOPPABLE, str(os.getpid()), *command, *dev]


def start_group(argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """A child in a session (and process group) of its own, its output in log."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            cwd=PROJECT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group; falls back to a signal-0 probe off Linux."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, pgrp, ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def stop_group(child: subprocess.Popen[bytes], seconds: float = STOP_SECONDS) -> None:
    """SIGTERM the child's whole group, wait for all of it, SIGKILL whatever is left."""
    if not signal_group(child, signal.SIGTERM, seconds):
        note(f"process group {child.pid} outlived SIGTERM by {seconds:.0f} s; killing it")
        signal_group(child, signal.SIGKILL, 5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=5)


def signal_group(child: subprocess.Popen[bytes], signum: int, seconds: float) -> bool:
    """Send signum to the group; True once no member is left (within seconds)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signum)
    deadline = time.monotonic() + seconds
    while True:
        child.poll()  # reap the leader so that it does not linger as a zombie
        if not group_members(child.pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def wait_for(url: str, seconds: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive():
            raise DemoError(f"the process serving {url} exited during start-up.")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.5)
    raise DemoError(f"{url} did not answer within {seconds:.0f} s.")


def log_tail(log: Path, lines: int = 25) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def explain_start_failure(error: DemoError, log: Path, port: int) -> DemoError:
    tail = log_tail(log)
    if "address already in use" in tail.lower():
        return DemoError(busy_port_message(port, "--port / DEMO_PORT") + " (it was taken during start-up)")
    return DemoError(f"dagster dev did not start: {error}\nLast lines of {log}:\n{tail}")


# -- while it runs -----------------------------------------------------------------------------


class RunReporter:
    """Says on the terminal when a run starts and ends, and where a published pipeline landed."""

    def __init__(self, instance: dg.DagsterInstance, store: S3Store) -> None:
        self.instance = instance
        self.store = store
        self.seen: dict[str, bool] = {r.dagster_run.run_id: True for r in instance.get_run_records(limit=100)}

    def poll(self) -> list[str]:
        lines: list[str] = []
        for record in reversed(self.instance.get_run_records(limit=50)):
            run = record.dagster_run
            if self.seen.get(run.run_id) or (run.run_id in self.seen and not run.is_finished):
                continue
            self.seen[run.run_id] = run.is_finished
            lines.append(self.describe(run))
            if run.is_finished and run.job_name == "publish_job" and run.status.value == "SUCCESS":
                lines.append(self.where_published(run.tags.get("dagster/partition", "")))
        return lines

    def describe(self, run: Any) -> str:
        key = run.tags.get("dagster/partition") or "every pipeline"
        by = run.tags.get("dagster/sensor_name") or run.tags.get("dagster/schedule_name")
        what = run.status.value if run.is_finished else "started"
        origin = f", launched by {by}" if by and not run.is_finished else ""
        when = time.strftime("%H:%M:%S")
        return f"[{when}] {run_title(run)} run {run.run_id[:8]} for {key}: {what}{origin}"

    def where_published(self, key: str) -> str:
        from pipeline_sync.defs.state import PLAN_ASSET, latest_metadata

        pipeline_id = str(latest_metadata(self.instance, PLAN_ASSET, key).get("pipeline_id", ""))
        live = self.store.read_pipeline(pipeline_id) if pipeline_id else None
        if live is None:
            return f"           {key} is not in the bucket: see the run's log in the UI."
        where = f"s3://{self.store.settings.bucket}/{self.store.pipeline_key(pipeline_id)}"
        return f"           {key} is published: {where}"


def run_title(run: Any) -> str:
    """The job's name, or for Dagster's implicit asset job (the UI's Materialize button) the assets."""
    if not run.job_name.startswith("__ASSET_JOB"):
        return str(run.job_name)
    assets = sorted(key.to_user_string() for key in run.asset_selection or ())
    return "materialize " + (", ".join(assets) or "assets")


def shown(path: Path) -> str:
    """A path as a person in the current directory would type it."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def partition_url(url: str, asset: str, key: str) -> str:
    query = urllib.parse.urlencode({"view": "partitions", "partition": key})
    return f"{url}/assets/{asset}?{query}"


def banner(
    url: str,
    statuses: Mapping[str, str],
    arranged: Mapping[str, str],
    digest: str,
    env_file: Path,
    log: Path,
) -> str:
    create, drift = arranged["create"], arranged["drift"]
    cli = shown(Path(sys.executable).parent / "pipeline-sync")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(Counter(statuses.values()).items()))
    why = {
        drift: 'edited in "Deck": replicaCount raised by hand',
        create: "not in the bucket yet",
        arranged["conflict"]: "an unmanaged pipeline already has its name",
    }
    found = "\n".join(f"  {statuses.get(key, '?'):<9} {key}  ({reason})" for key, reason in why.items())
    return f"""
pipeline-sync demo is running: {url}

The local S3 bucket '{BUCKET}' holds Front50 pipelines. The first reconcile planned
{len(statuses)} pipelines ({counts}), among them:
{found}
  untouched {arranged["unmanaged"]}  (not in the catalog)
  hand-made {arranged["hand_made"]}  (README "Migrating an existing Spinnaker")

Three things to try:
  1. Open the plan of {create}: its metadata has the plan_digest, and [Show Markdown]
     on the diff row shows the whole new pipeline. The drift of {drift} is a short diff.
       {partition_url(url, "pipeline_plan", create)}
       {partition_url(url, "pipeline_plan", drift)}
  2. Approve exactly that plan, from another shell:
       source {shown(env_file)}
       {cli} approve {create} --digest {digest} --approver you
     or in the UI: click `approve_in_launchpad` in that plan's metadata (partition and
     config filled in), put your name for `you`, and Launch Run. The config it fills in:
       ops: {{approval: {{config: {{approver: you, plan_digest: {digest}}}}}}}
  3. Watch approval_sensor start publish_job within about 10 s (Runs tab, or below); the
     pipeline then appears in the bucket.

dagster dev's log: {shown(log)}
Press Ctrl-C to stop everything this demo started.
"""


# -- main --------------------------------------------------------------------------------------


@dataclass
class Demo:
    url: str
    dagster: subprocess.Popen[bytes]
    log: Path
    reporter: RunReporter
    text: str


def start(args: argparse.Namespace, stack: contextlib.ExitStack, interrupts: Interrupts) -> Demo:
    """Bring everything up; each piece is registered on stack as soon as it exists."""
    import dagster as dg

    from pipeline_sync.store.s3 import S3Settings, S3Store

    home: Path = args.home.resolve()
    stack.enter_context(claim_home(home))
    print(f"Starting S3 (moto) on {HOST}:{args.s3_port} ...", flush=True)
    s3 = S3Server(args.s3_port)
    stack.callback(s3.stop)
    settings = demo_env(home, s3.url)
    use_env(settings)
    env_file = write_home_files(home, settings)
    print(f"Seeding bucket {BUCKET} and running a first reconcile ...", flush=True)
    arranged = seed_bucket()
    instance = stack.enter_context(dg.DagsterInstance.get())
    first_reconcile(instance)
    log = home / "dagster-dev.log"
    url = f"http://{HOST}:{args.port}"
    print(f"Starting dagster dev on {url} (about 15 s) ...", flush=True)
    with interrupts.deferred():
        dagster = start_group(dagster_dev_argv(args.port), log)
        stack.callback(stop_group, dagster)
    try:
        wait_for(f"{url}/server_info", START_SECONDS, lambda: dagster.poll() is None)
    except DemoError as exc:
        raise explain_start_failure(exc, log, args.port) from None
    reporter = RunReporter(instance, S3Store(S3Settings.from_env()))
    digest = plan_digest(instance, arranged["create"])
    text = banner(url, plan_statuses(instance), arranged, digest, env_file, log)
    return Demo(url, dagster, log, reporter, text)


def watch(demo: Demo) -> int:
    while demo.dagster.poll() is None:
        try:
            lines = demo.reporter.poll()
        except Exception:  # the instance is busy or mid-write: ask again next time
            lines = []
        for line in lines:
            print(line, flush=True)
        time.sleep(2)
    note(f"dagster dev exited with {demo.dagster.returncode}; stopping the demo. Last lines of its log:")
    note(log_tail(demo.log))
    return 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_sync.demo", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("DEMO_PORT", "3000")), help="Dagster UI port"
    )
    parser.add_argument(
        "--s3-port", type=int, default=int(os.environ.get("DEMO_S3_PORT", "5055")), help="S3 port"
    )
    parser.add_argument(
        "--home", type=Path, default=PROJECT / ".demo", help="where the demo keeps its state (emptied)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_ports({"--port / DEMO_PORT": args.port, "--s3-port / DEMO_S3_PORT": args.s3_port})
    except DemoError as exc:
        note(f"error: {exc}")
        return 1
    interrupts = Interrupts().install()
    stack = contextlib.ExitStack()
    interrupted = False
    try:
        demo = start(args, stack, interrupts)
        print(demo.text, flush=True)
        return watch(demo)
    except KeyboardInterrupt:
        interrupted = True
        note("\nStopping the demo ...")
        return 0
    except (DemoError, PipelineSyncError) as exc:
        note(f"error: {exc}")
        return 1
    finally:
        interrupts.stop_raising()
        stack.close()
        if interrupted:
            note("Everything the demo started has stopped.")


if __name__ == "__main__":
    sys.exit(main())
