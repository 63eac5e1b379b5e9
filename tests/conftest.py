"""Shared test helpers.  Tests marked ``qe`` run real Quantum ESPRESSO executables; the README's
test command installs them, so a missing pw.x is a failure there, not a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, QE67  # noqa: F401  (shared paths: tests/helpers.py)


@pytest.fixture(scope="session")
def pseudo_dir() -> Path:
    """The shared generated-pseudopotential cache (scripts/bootstrap.sh fills it)."""
    from tmdflow.settings import load_settings

    return load_settings().pseudo_dir


@pytest.fixture
def qe_settings(tmp_path, pseudo_dir):
    from tmdflow.settings import load_settings

    return load_settings(work_dir=tmp_path, pseudo_dir=pseudo_dir, nprocs=min(2, os.cpu_count() or 1))


# -- a real single-node SLURM cluster (Debian slurm-wlm 22.05 + munge) for the queue tests ----------

SLURM_DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel")


class SlurmCluster:
    """munged, slurmctld and slurmd of this host with a private configuration, key, socket, ports and
    state in ``root`` (nothing under /etc is touched).  Clients find it through ``env`` (SLURM_CONF)."""

    def __init__(self, root: Path) -> None:
        import shutil
        import socket

        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.which = {name: shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") for name in SLURM_DAEMONS}
        self.procs: list = []
        self.munged_pid: int | None = None
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    @staticmethod
    def _free_port() -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def start(self) -> None:
        import pwd
        import subprocess
        import time

        root = self.root
        munge_user = pwd.getpwnam("munge")
        key_dir, sock_dir, log = root / "munge-key", root / "munge-socket", root / "log"
        for d, mode in ((key_dir, 0o700), (sock_dir, 0o755)):  # munged: socket dir must be traversable
            d.mkdir()
            os.chown(d, munge_user.pw_uid, munge_user.pw_gid)
            os.chmod(d, mode)
        for d in ("state", "spool", "log"):
            (root / d).mkdir()
        key = key_dir / "munge.key"
        subprocess.run([self.which["mungekey"], "-c", "-k", str(key)], check=True, capture_output=True)
        os.chown(key, munge_user.pw_uid, munge_user.pw_gid)
        os.chmod(key, 0o400)
        socket_path = sock_dir / "munge.socket"
        subprocess.run(["runuser", "-u", "munge", "--", self.which["munged"], f"--socket={socket_path}",
                        f"--key-file={key}", f"--pid-file={key_dir / 'munged.pid'}",
                        f"--log-file={key_dir / 'munged.log'}", f"--seed-file={key_dir / 'munged.seed'}"],
                       check=True, capture_output=True)
        self.munged_pid = int((key_dir / "munged.pid").read_text())
        mem_mib = int(next(l for l in Path("/proc/meminfo").read_text().splitlines()
                           if l.startswith("MemTotal")).split()[1]) // 1024
        self.conf.write_text(f"""\
ClusterName=tmdflowtest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={self._free_port()}
SlurmdPort={self._free_port()}
AuthType=auth/munge
AuthInfo=socket={socket_path}
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
ReturnToService=2
KillWait=10
MinJobAge=600
StateSaveLocation={root / 'state'}
SlurmdSpoolDir={root / 'spool'}
SlurmctldPidFile={root / 'slurmctld.pid'}
SlurmdPidFile={root / 'slurmd.pid'}
SlurmctldLogFile={log / 'slurmctld.log'}
SlurmdLogFile={log / 'slurmd.log'}
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory={max(mem_mib - 1024, 512)} State=UNKNOWN
PartitionName=test Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")
        for argv in ([self.which["slurmctld"], "-D", "-i"], [self.which["slurmd"], "-D", "-N", self.host]):
            with open(log / f"{Path(argv[0]).name}.stdout", "w") as out:
                self.procs.append(subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run([self.which["sinfo"], "-h", "-o", "%T"], env=self.env, capture_output=True,
                                   text=True)
            if state.stdout.strip() == "idle":
                return
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(0.5)
        raise RuntimeError(f"the test SLURM cluster did not come up (sinfo: {state.stdout.strip() or state.stderr.strip()}); "
                           + " | ".join(f"{f.name}: {f.read_text()[-600:]}" for f in sorted(log.glob("*")) if f.is_file()))

    def stop(self) -> None:
        import signal
        import subprocess

        if self.procs and self.procs[0].poll() is None:
            subprocess.run([self.which["scancel"], "--full", "--user", "root"], env=self.env, capture_output=True)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.munged_pid:
            try:
                os.kill(self.munged_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running single-node SLURM cluster (skipped unless root: it starts munged/slurmctld/slurmd).

    The README's test command installs slurm-wlm and munge (scripts/bootstrap.sh), so missing
    programs are a failure for root, not a skip."""
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("the SLURM tests start munged, slurmctld and slurmd, which needs root (run make test as root)")
    # a short path without spaces: slurm.conf and munged take it unquoted
    root = Path(tempfile.mkdtemp(prefix="tmdflow-slurm-"))
    os.chmod(root, 0o755)
    cluster = SlurmCluster(root)
    missing = [name for name, path in cluster.which.items() if path is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: install slurm-wlm and munge (make setup does, as root)")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- a strict in-process MongoDB stand-in for the store connection layer (tests/strict_mongo.py) --

@pytest.fixture
def strict_mongo(monkeypatch):
    """``strict_mongo.uri`` (mongodb://user:SECRET@db.example.invalid:27017/) resolves, for
    pymongo.MongoClient in this process, to one mongomock client whose collections check every
    write as a real MongoDB server would (BSON-encodable, no '.'/'$' keys, $-operator updates,
    16 MiB).  ``strict_mongo.readonly = True`` plays a read-only user; ``writes``,
    ``index_calls`` and ``dump()`` let a test see what happened.  Use it in-process (api, or
    click's CliRunner), not through a subprocess."""
    from tests.strict_mongo import StrictMongo
    from tmdflow.store import connection

    strict = StrictMongo()
    strict.install(monkeypatch)
    monkeypatch.delenv("MONGOMOCK_SERVERSTORE_FILE", raising=False)
    connection.reset_cache()
    try:
        yield strict
    finally:
        connection.reset_cache()
