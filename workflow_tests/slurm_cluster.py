"""A real single-node SLURM on this machine, for the cluster tests.

``SingleNodeSlurm(folder, accounting=...)`` installs the Debian packages if they are missing, writes
the configuration, starts munged, (with accounting) mariadbd and slurmdbd, then slurmctld and slurmd,
each in the foreground as a child process, and on exit stops exactly those processes and removes
the files it put in /etc/slurm (restoring any that were there). Everything else lives in ``folder``.

The node declares two GPUs backed by empty files, so the profile's real ``--gpus=1`` requests are
scheduled on a machine without GPUs. slurm.conf must sit at /etc/slurm/slurm.conf: the executor
plugin's in-job step drops SLURM_* variables, so a private SLURM_CONF would be lost inside jobs.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
ACCOUNTING_PACKAGES = ["slurmdbd", "mariadb-server"]
ETC = Path("/etc/slurm")
PORTS = {"slurmctld": 6817, "slurmd": 6818, "slurmdbd": 6819}
PARTITION = "debug"
ACCOUNT = "slicepick"
CLUSTER = "slicepick"


def missing_packages(names) -> list[str]:
    missing = []
    for name in names:
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
        if status.stdout.strip() != "install ok installed":
            missing.append(name)
    return missing


def install_packages(names) -> None:
    """apt-get install what is missing, without letting the packages start their services."""
    missing = missing_packages(names)
    if not missing:
        return
    policy = Path("/usr/sbin/policy-rc.d")
    own_policy = not policy.exists()
    if own_policy:  # 101 = "action forbidden": maintainer scripts must not start daemons
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["timeout", "300", "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["timeout", "600", "apt-get", "install", "-y", "-qq", *missing], check=True, env=env)
    finally:
        if own_policy:
            policy.unlink()


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s\n{tail}")
        time.sleep(0.25)


class SingleNodeSlurm:
    """Context manager: a one-node cluster with partition ``debug`` and two (fake) GPUs."""

    def __init__(self, folder: Path, accounting: bool):
        self.folder = Path(folder)
        self.accounting = accounting
        self.host = socket.gethostname().split(".")[0]
        self.munge_socket = self.folder / "munge" / "munge.socket"
        self.jobcomp = self.folder / "jobcomp.txt"
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self._etc_written: list[Path] = []
        self._etc_backups: dict[Path, bytes] = {}

    # -- set-up --------------------------------------------------------------------------------
    def __enter__(self) -> "SingleNodeSlurm":
        install_packages(PACKAGES + (ACCOUNTING_PACKAGES if self.accounting else []))
        busy = [f"{name} ({port})" for name, port in PORTS.items() if not port_is_free(port)]
        if busy:
            raise RuntimeError(f"SLURM ports in use, another cluster is running here: {', '.join(busy)}")
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._start_munge()
            if self.accounting:
                self._start_database()
            self._write_slurm_conf()
            if self.accounting:
                self._start("slurmdbd", ["slurmdbd", "-D"], "slurmdbd.log")
                wait_for(lambda: not port_is_free(PORTS["slurmdbd"]), "slurmdbd", 60, self.folder / "slurmdbd.log")
                self._register_accounting()
            self._start("slurmctld", ["slurmctld", "-D", "-i"], "slurmctld.log")
            self._start("slurmd", ["slurmd", "-D"], "slurmd.log")
            wait_for(self._node_idle, "node in sinfo", 60, self.folder / "slurmctld.log")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self, name: str, argv: list[str], log: str) -> subprocess.Popen:
        with open(self.folder / log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.processes.append((name, proc))
        time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at start ({proc.returncode}):\n{(self.folder / log).read_text()[-3000:]}")
        return proc

    def _start_munge(self) -> None:
        munge = self.folder / "munge"
        munge.mkdir(mode=0o755, exist_ok=True)
        munge.chmod(0o755)  # munged checks the socket folder's mode
        keys = self.folder / "munge-key"
        keys.mkdir(mode=0o700, exist_ok=True)
        keys.chmod(0o700)
        key = keys / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        self._start("munged", ["munged", "--foreground", "--force", f"--key-file={key}",
                               f"--socket={self.munge_socket}", f"--pid-file={munge / 'munged.pid'}",
                               f"--log-file={self.folder / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}"],
                    "munged.out")
        wait_for(self.munge_socket.exists, "munged", 30, self.folder / "munged.log")

    def _start_database(self) -> None:
        data = self.folder / "mysql"
        self.db_port = free_port()
        self.db_password = secrets.token_hex(12)
        subprocess.run(["mariadb-install-db", "--user=root", f"--datadir={data}", "--auth-root-authentication-method=socket",
                        "--skip-test-db"], check=True, capture_output=True, timeout=120)
        sock = self.folder / "mysqld.sock"
        self._start("mariadbd", ["mariadbd", "--no-defaults", "--user=root", f"--datadir={data}", f"--socket={sock}",
                                 f"--port={self.db_port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
                                 f"--pid-file={self.folder / 'mariadbd.pid'}", "--innodb-buffer-pool-size=64M",
                                 f"--log-error={self.folder / 'mariadbd.log'}"], "mariadbd.out")
        wait_for(sock.exists, "mariadbd", 60, self.folder / "mariadbd.log")
        sql = (f"CREATE USER 'slurm'@'%' IDENTIFIED BY '{self.db_password}';"
               "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'%'; FLUSH PRIVILEGES;")
        subprocess.run(["mariadb", f"--socket={sock}", "-uroot", "-e", sql], check=True, timeout=60)

    def _write_etc(self, name: str, text: str, mode: int = 0o644) -> None:
        path = ETC / name
        ETC.mkdir(exist_ok=True)
        if path.exists() and path not in self._etc_backups:
            self._etc_backups[path] = path.read_bytes()
        path.write_text(text)
        path.chmod(mode)
        self._etc_written.append(path)

    def _write_slurm_conf(self) -> None:
        cpus = os.cpu_count()
        mem_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 1024
        for i in range(2):
            (self.folder / f"fakegpu{i}").touch()
        state = self.folder / "state"
        spool = self.folder / "spool"
        state.mkdir(exist_ok=True)
        spool.mkdir(exist_ok=True)
        if self.accounting:
            accounting = (f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost={self.host}\n"
                          f"AccountingStoragePort={PORTS['slurmdbd']}\nAccountingStoragePass={self.munge_socket}\n"
                          "AccountingStorageEnforce=associations\nAccountingStorageTRES=gres/gpu\n")
        else:
            accounting = "AccountingStorageType=accounting_storage/none\n"
        self._write_etc("slurm.conf", f"""# written by slicepick's workflow_tests/slurm_cluster.py; removed when the test ends
ClusterName={CLUSTER}
SlurmctldHost={self.host}
SlurmctldPort={PORTS['slurmctld']}
SlurmdPort={PORTS['slurmd']}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={self.folder / 'slurmctld.pid'}
SlurmdPidFile={self.folder / 'slurmd.pid'}
SlurmctldLogFile={self.folder / 'slurmctld.log'}
SlurmdLogFile={self.folder / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
DefMemPerCPU=1024
MinJobAge=300
GresTypes=gpu
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
{accounting}NodeName={self.host} CPUs={cpus} RealMemory={mem_mib} Gres=gpu:2 State=UNKNOWN
PartitionName={PARTITION} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")
        self._write_etc("gres.conf", f"NodeName={self.host} Name=gpu File={self.folder}/fakegpu[0-1]\n")
        if self.accounting:
            self._write_etc("slurmdbd.conf", f"""# written by slicepick's workflow_tests/slurm_cluster.py; removed when the test ends
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
DbdHost={self.host}
DbdPort={PORTS['slurmdbd']}
SlurmUser=root
LogFile={self.folder / 'slurmdbd.log'}
PidFile={self.folder / 'slurmdbd.pid'}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.db_port}
StorageUser=slurm
StoragePass={self.db_password}
StorageLoc=slurm_acct_db
""", mode=0o600)

    def _register_accounting(self) -> None:
        for args in (["add", "cluster", CLUSTER], ["add", "account", ACCOUNT, f"cluster={CLUSTER}"],
                     ["add", "user", "root", f"account={ACCOUNT}", f"cluster={CLUSTER}"]):
            deadline = time.monotonic() + 60
            while True:  # slurmdbd may still be creating its tables
                done = subprocess.run(["sacctmgr", "-i", *args], capture_output=True, text=True, timeout=60)
                if done.returncode == 0 or "already exist" in done.stdout + done.stderr:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sacctmgr {' '.join(args)}: {done.stdout}{done.stderr}")
                time.sleep(1)

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=30)
        return out.returncode == 0 and out.stdout.strip() == "idle"

    # -- use -----------------------------------------------------------------------------------
    def completed_jobs(self) -> list[dict]:
        """Finished jobs as the scheduler recorded them: sacct with accounting, else the job-completion file."""
        if self.accounting:
            out = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "-S", "now-1days",
                                  "-o", "JobIDRaw,JobName,State,Partition,Account,AllocTRES"],
                                 capture_output=True, text=True, check=True, timeout=60).stdout
            keys = ["JobId", "JobName", "JobState", "Partition", "Account", "AllocTRES"]
            return [dict(zip(keys, line.split("|", len(keys) - 1))) for line in out.splitlines() if line]
        if not self.jobcomp.exists():
            return []
        return [dict(field.split("=", 1) for field in line.split() if "=" in field)
                for line in self.jobcomp.read_text().splitlines()]

    def cancel_all(self) -> None:
        """Cancel every job and wait (30 s at most) until SLURM has ended their processes."""
        subprocess.run(["scancel", "--full", "--user=root"], capture_output=True, timeout=60)
        wait_for(lambda: subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=30).stdout == "",
                 "cancelled jobs to end", 30)

    # -- tear-down -----------------------------------------------------------------------------
    def __exit__(self, *exc) -> None:
        if any(name == "slurmctld" for name, _ in self.processes):
            try:
                self.cancel_all()
            except (TimeoutError, subprocess.SubprocessError):
                pass  # stop the daemons all the same
        for name, proc in reversed(self.processes):  # the daemons this object started, newest first
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=20)
        self.processes.clear()
        for path in self._etc_written:
            if path in self._etc_backups:
                path.write_bytes(self._etc_backups[path])
            else:
                path.unlink(missing_ok=True)
        self._etc_written.clear()
