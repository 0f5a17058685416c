"""A one-node Slurm cluster in a temporary folder, for tests that submit real jobs.

    with SlurmCluster() as cluster:
        subprocess.run(["sbatch", "--wait", ...], env=cluster.env)

Started here, stopped here: munged (as the `munge` user, on the package's key, or on a key made
for the test when /etc/munge/munge.key is missing), slurmctld and slurmd, each in the foreground
as our child, with config, state, spool, logs, pid files and the munge socket in the folder, and
free ports of their own, so parallel copies do not meet. Entering waits until the node is idle.
Leaving (or interpreter exit, via atexit) stops the daemons by their pid files, then kills every
process still carrying this cluster's marker in its environment (job steps, jobs), then removes
the folder. When Slurm cannot start here, entering raises SlurmUnavailable with the reason taken
from the daemons' logs; the caller turns that into a skip, never a pass. MMU_SLURM_UNAVAILABLE=why
in the environment makes it raise at once (to check that skip path where Slurm runs).
"""
import atexit
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

MARKER = "MMU_SLURM_CLUSTER"  # set in every daemon's and job's environment: finds leftovers
DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "sinfo", "scontrol")
PR_SET_PDEATHSIG = 1


class SlurmUnavailable(Exception):
    """Slurm cannot run in this environment; the message says why (daemon log lines)."""


def _die_with_parent():
    # A test killed by ctest's timeout cannot run its cleanup: the daemons die with it.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path, lines=12):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).strip() or "(empty)"
    except OSError as e:
        return "(no log: %s)" % e.strerror


def _pid_from(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class SlurmCluster:
    """A one-node cluster named after `hostname -s` with `cpus` CPUs and `memory_mb`; `env` is the environment
    for clients (sbatch, squeue, ...) and the jobs they submit."""

    def __init__(self, cpus=2, memory_mb=4096, start_timeout=30.0, log=print):
        self.cpus = cpus
        self.memory_mb = memory_mb  # what jobs may ask for (--mem); nothing enforces it
        self.start_timeout = start_timeout
        self.log = log
        self.dir = None
        self.env = None
        self.children = {}
        self.stopped = True

    # ---- paths ----
    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def __enter__(self):
        if os.environ.get("MMU_SLURM_UNAVAILABLE"):  # to check a caller's skip path on a machine with Slurm
            raise SlurmUnavailable("MMU_SLURM_UNAVAILABLE is set: %s" % os.environ["MMU_SLURM_UNAVAILABLE"])
        for tool in DAEMONS:
            if shutil.which(tool) is None and not os.path.exists("/usr/sbin/" + tool):
                raise SlurmUnavailable("%s is not installed (scripts/install-deps.sh installs slurm-wlm and munge)" % tool)
        if os.geteuid() != 0:
            raise SlurmUnavailable("starting slurmd and munged as another user needs root (running as uid %d)" % os.geteuid())
        try:
            self.munge_user = pwd.getpwnam("munge")
        except KeyError:
            raise SlurmUnavailable("no `munge` user (the munge package makes it)") from None
        # Short, under /tmp: unix socket paths are limited to 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="mmu-slurm-")
        os.chmod(self.dir, 0o755)  # munged (as munge) must reach its own subfolder
        self.stopped = False
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # ---- start ----
    def _start(self):
        self.host = socket.gethostname().split(".")[0]
        for d in ("state", "spool", "log", "run"):
            os.makedirs(self.path(d))
        self.env = dict(os.environ, SLURM_CONF=self.path("slurm.conf"), **{MARKER: self.dir})
        for k in list(self.env):
            if k.startswith("SLURM_") and k != "SLURM_CONF":
                del self.env[k]  # a test run inside a Slurm job must not talk to that job's cluster
        self._start_munged()
        self._write_config()
        self._spawn("slurmctld", ["/usr/sbin/slurmctld", "-D", "-i", "-f", self.path("slurm.conf")])
        self._spawn("slurmd", ["/usr/sbin/slurmd", "-D", "-f", self.path("slurm.conf"), "-N", self.host])
        self._wait_idle()

    def _munge_key(self):
        key = "/etc/munge/munge.key"
        if os.path.exists(key):
            return key
        mdir = self.path("munge")
        key = os.path.join(mdir, "munge.key")
        if shutil.which("mungekey") or os.path.exists("/usr/sbin/mungekey"):
            subprocess.run(["mungekey", "--create", "--keyfile=" + key], check=True, capture_output=True)
        else:
            with open(key, "wb") as f:
                f.write(os.urandom(1024))
        os.chown(key, self.munge_user.pw_uid, self.munge_user.pw_gid)
        os.chmod(key, 0o400)
        self.log("slurm_cluster: /etc/munge/munge.key is missing; made a key for this test at %s" % key)
        return key

    def _start_munged(self):
        mdir = self.path("munge")
        os.makedirs(mdir, mode=0o700)
        os.chown(mdir, self.munge_user.pw_uid, self.munge_user.pw_gid)
        self.munge_socket = os.path.join(mdir, "munge.socket")
        key = self._munge_key()
        self._spawn("munged", ["/usr/sbin/munged", "-F", "--force", "--socket=" + self.munge_socket,
                               "--key-file=" + key, "--pid-file=" + os.path.join(mdir, "munged.pid"),
                               "--log-file=" + os.path.join(mdir, "munged.log"),
                               "--seed-file=" + os.path.join(mdir, "munged.seed")],
                    user=self.munge_user.pw_uid, group=self.munge_user.pw_gid)
        self._wait(lambda: os.path.exists(self.munge_socket), 10, "munged")

    def _write_config(self):
        self.ctld_port, self.slurmd_port = _free_port(), _free_port()
        name = "mmu%d" % os.getpid()
        lines = [
            "ClusterName=%s" % name,
            "SlurmctldHost=%s(127.0.0.1)" % self.host,
            "SlurmctldPort=%d" % self.ctld_port,
            "SlurmdPort=%d" % self.slurmd_port,
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "AuthInfo=socket=%s" % self.munge_socket,
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "MailProg=/bin/true",  # none installed; slurmctld complains without one
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",
            "SchedulerType=sched/backfill",
            # sbatch --wait polls every 2 s with a MinJobAge this short (at the default 300 its waits grow to
            # 8 and 32 s, measured: a 3-s job returned after 10 s); a finished job stays known over two polls.
            "MinJobAge=5",
            # A job asking for more than the node or partition has is refused at once, never left pending.
            "EnforcePartLimits=ALL",
            "StateSaveLocation=%s" % self.path("state"),
            "SlurmdSpoolDir=%s" % self.path("spool"),
            "SlurmctldPidFile=%s" % self.path("run", "slurmctld.pid"),
            "SlurmdPidFile=%s" % self.path("run", "slurmd.pid"),
            "SlurmctldLogFile=%s" % self.path("log", "slurmctld.log"),
            "SlurmdLogFile=%s" % self.path("log", "slurmd.log"),
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "NodeName=%s NodeAddr=127.0.0.1 CPUs=%d RealMemory=%d State=UNKNOWN" % (self.host, self.cpus, self.memory_mb),
            # OverSubscribe=YES: jobs that ask (sbatch --oversubscribe) may share CPUs, so short jobs need not queue.
            "PartitionName=test Nodes=%s Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES" % self.host,
        ]
        with open(self.path("slurm.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def _spawn(self, name, argv, **kw):
        out = open(self.path("log", name + ".out"), "wb")
        self.children[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                               preexec_fn=_die_with_parent, **kw)
        out.close()

    def _why(self):
        parts = []
        for name in ("munged", "slurmctld", "slurmd"):
            p = self.children.get(name)
            state = "not started" if p is None else ("running" if p.poll() is None else "exited %d" % p.returncode)
            log = self.path("munge", "munged.log") if name == "munged" else self.path("log", name + ".log")
            parts.append("%s (%s): %s | %s" % (name, state, _tail(log, 6).replace("\n", " | "),
                                               _tail(self.path("log", name + ".out"), 4).replace("\n", " | ")))
        return "\n  ".join(parts)

    def _wait(self, ready, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if ready():
                return
            dead = [n for n, p in self.children.items() if p.poll() is not None]
            if dead:
                raise SlurmUnavailable("%s exited while starting:\n  %s" % (", ".join(dead), self._why()))
            time.sleep(0.2)
        raise SlurmUnavailable("%s not ready after %.0f s:\n  %s" % (what, timeout, self._why()))

    def _node_state(self):
        p = subprocess.run(["sinfo", "-h", "-N", "-o", "%T", "-n", self.host], env=self.env,
                           capture_output=True, text=True, timeout=10)
        return p.stdout.strip() if p.returncode == 0 else ""

    def _wait_idle(self):
        self._wait(lambda: self._node_state() == "idle", self.start_timeout, "node %s idle" % self.host)

    # ---- use ----
    def sbatch(self, *args, env_extra=None, cwd=None, timeout=120):
        """Runs `sbatch --parsable ARGS` (add --wait to block) in `cwd` (where jobs write their output
        by default) with the cluster's environment plus env_extra, which sbatch exports to the job."""
        return subprocess.run(["sbatch", "--parsable", *map(str, args)], env=dict(self.env, **(env_extra or {})),
                              cwd=cwd, capture_output=True, text=True, timeout=timeout)

    # ---- stop ----
    def _marked_pids(self):
        mark = ("%s=%s" % (MARKER, self.dir)).encode()
        me = {os.getpid(), os.getppid()}
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in me:
                continue
            try:
                with open("/proc/%s/environ" % entry, "rb") as f:
                    if mark in f.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
        return found

    def stop(self):
        """Stops the daemons (pid files first, then our children), kills whatever still carries
        the marker, removes the folder. Safe to call twice."""
        if self.stopped:
            return
        self.stopped = True
        pids = [_pid_from(self.path("run", "slurmd.pid")), _pid_from(self.path("run", "slurmctld.pid")),
                _pid_from(self.path("munge", "munged.pid"))]
        pids += [p.pid for p in self.children.values()]
        for pid in dict.fromkeys(p for p in pids if p):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 5
        for p in self.children.values():
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for _ in range(3):  # job steps and jobs outlive slurmd: kill them by the marker
            left = self._marked_pids()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        if os.environ.get("MMU_KEEP_SLURM_DIR"):
            self.log("slurm_cluster: kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
