"""Processes of the soak: started inside a lab node, their output timestamped.

Contract:
  * ``Proc`` starts ``argv`` in a node's namespace (``ip netns exec`` execs
    the command, so the Popen pid is the program's pid) in a new session, with
    stdout and stderr merged into a reader thread that stamps every line with
    the soak clock (seconds since the soak started) and appends it to a log
    file and to ``lines``. Detection and recovery times are measured from
    these stamps.
  * ``find`` searches the stamped lines; ``stats`` reads /proc/<pid> (resident
    memory, threads, open descriptors) while the process lives.
  * ``kill_all`` (SIGKILL to the process group) is safe to call on exited
    processes. Lines are appended under a lock; readers take a snapshot.
"""

import os
import signal
import subprocess
import threading
import time


class Clock:
    """Seconds since the soak started (monotonic)."""

    def __init__(self):
        self.t0 = time.monotonic()

    def now(self):
        return time.monotonic() - self.t0


class Proc:
    def __init__(self, name, argv, node, clock, log_dir, env=None):
        self.name = name
        self.node = node
        self.clock = clock
        self.lines = []  # (t, text)
        self._lock = threading.Lock()
        self.started_at = clock.now()
        self.log_path = os.path.join(log_dir, name + ".log")
        full_env = dict(os.environ)
        full_env.update(env or {})
        prefix = node.exec_prefix() if node is not None else []
        self._log = open(self.log_path, "a", buffering=1)
        self._log.write("%9.3f ---- started: %s\n" % (self.started_at, " ".join(argv)))
        self.popen = subprocess.Popen(prefix + argv, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=full_env, start_new_session=True)
        self.pid = self.popen.pid
        self.exit_code = None
        self.exited_at = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.popen.stdout:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            t = self.clock.now()
            with self._lock:
                self.lines.append((t, text))
            self._log.write("%9.3f %s\n" % (t, text))
        self.popen.stdout.close()

    def poll(self):
        """The exit code (negative: killed by that signal), or None while running."""
        if self.exit_code is None:
            code = self.popen.poll()
            if code is not None:
                self.exit_code = code
                self.exited_at = self.clock.now()
                self._reader.join(timeout=5)
                self._log.write("%9.3f ---- exited: %d\n" % (self.exited_at, code))
                self._log.close()
        return self.exit_code

    def running(self):
        return self.poll() is None

    def signal(self, sig):
        """Sends `sig` to the process; False if it had already exited."""
        if not self.running():
            return False
        try:
            os.kill(self.pid, sig)
            return True
        except ProcessLookupError:
            return False

    def kill_all(self):
        """SIGKILL to the process group; waits for it to be reaped."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.poll()

    def wait(self, timeout):
        """Waits up to `timeout` seconds; returns the exit code or None."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.poll() is not None:
                return self.exit_code
            time.sleep(0.02)
        return self.poll()

    def snapshot(self):
        with self._lock:
            return list(self.lines)

    def find(self, needle, since=0.0, also=None):
        """First (t, line) at or after `since` containing `needle` (and `also`,
        if given), or None."""
        for t, text in self.snapshot():
            if t >= since and needle in text and (also is None or also in text):
                return t, text
        return None

    def text(self):
        return "\n".join(text for _, text in self.snapshot())

    def thread_names(self):
        """{thread name: count} from /proc/<pid>/task/*/comm ({} once exited)."""
        names = {}
        try:
            for tid in os.listdir("/proc/%d/task" % self.pid):
                try:
                    with open("/proc/%d/task/%s/comm" % (self.pid, tid)) as f:
                        name = f.read().strip()
                except OSError:
                    continue
                names[name] = names.get(name, 0) + 1
        except OSError:
            pass
        return names

    def stats(self):
        """{"rss_kb", "threads", "fds"} from /proc, or None if it has exited."""
        try:
            rss = threads = None
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
                    elif line.startswith("Threads:"):
                        threads = int(line.split()[1])
            fds = len(os.listdir("/proc/%d/fd" % self.pid))
            if rss is None or threads is None:
                return None
            return {"rss_kb": rss, "threads": threads, "fds": fds}
        except (FileNotFoundError, ProcessLookupError):
            return None
