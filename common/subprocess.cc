#include "common/subprocess.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"

extern char** environ;

namespace retort {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(10);

// What the child reports through the error pipe when it fails before exec.
struct ChildFailure {
  int stage;
  int error;
};
enum ChildStage : int { kStageSetup = 1, kStageStdout, kStageStderr, kStageExec };

absl::Status ErrnoStatus(int err, const std::string& message) {
  std::string text = absl::StrCat(message, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(text);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(text);
  return absl::InternalError(text);
}

// Closes `fd` if it is open, keeping errno.
void CloseIfOpen(int fd) {
  if (fd >= 0) {
    int saved = errno;
    ::close(fd);
    errno = saved;
  }
}

// The parent's environment with `overrides` applied, as "KEY=VALUE" strings.
std::vector<std::string> BuildEnvironment(
    const std::vector<std::pair<std::string, std::string>>& overrides) {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    absl::string_view kv(*entry);
    absl::string_view key = kv.substr(0, kv.find('='));
    bool overridden = std::any_of(overrides.begin(), overrides.end(),
                                  [&](const auto& o) { return o.first == key; });
    if (!overridden) env.emplace_back(kv);
  }
  for (const auto& [key, value] : overrides) env.push_back(absl::StrCat(key, "=", value));
  return env;
}

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// Resolves a program name without '/' on the PATH from `env`.
absl::StatusOr<std::string> ResolveProgram(const std::string& program,
                                           const std::vector<std::string>& env) {
  if (program.empty()) return absl::InvalidArgumentError("Subprocess: empty program name");
  if (program.find('/') != std::string::npos) return program;
  std::string path_var = "/usr/local/bin:/usr/bin:/bin";
  for (const std::string& kv : env) {
    if (absl::StartsWith(kv, "PATH=")) path_var = kv.substr(5);
  }
  for (absl::string_view dir : absl::StrSplit(path_var, ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", program);
    if (IsExecutableFile(candidate)) return candidate;
  }
  return absl::NotFoundError(
      absl::StrCat("cannot start ", program, ": not found on PATH (", path_var, ")"));
}

absl::StatusOr<int> OpenForRedirect(const std::string& path, const std::string& program) {
  if (path.empty()) return -1;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return ErrnoStatus(
        errno, absl::StrCat("cannot start ", program, ": cannot open ", path, " for output"));
  }
  if (fd <= STDERR_FILENO) {
    // The parent has stdio closed; move the file out of the way so that the
    // child's dup2 onto 1 and 2 cannot clobber it.
    int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    int err = errno;
    ::close(fd);
    if (moved < 0) return ErrnoStatus(err, absl::StrCat("cannot start ", program, ": dup"));
    fd = moved;
  }
  return fd;
}

// Writes the failure to the error pipe and exits. Async-signal-safe.
[[noreturn]] void ChildFail(int pipe_fd, int stage) {
  ChildFailure failure{stage, errno};
  ssize_t ignored = ::write(pipe_fd, &failure, sizeof(failure));
  (void)ignored;
  ::_exit(127);
}

// Points `target` (1 or 2) at `fd` (> 2), leaving it open across exec.
bool Redirect(int fd, int target) { return fd < 0 || ::dup2(fd, target) == target; }

// Runs in the child between fork and exec: only async-signal-safe calls.
[[noreturn]] void RunChild(pid_t parent, int pipe_fd, int stdout_fd, int stderr_fd, int max_fd,
                           const char* path, char* const* argv, char* const* envp) {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) ChildFail(pipe_fd, kStageSetup);
  if (::getppid() != parent) ::_exit(127);  // the parent is already gone

  // Default signal handling and an empty mask, whatever the parent had.
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
  sigset_t empty;
  ::sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);

  if (!Redirect(stdout_fd, STDOUT_FILENO)) ChildFail(pipe_fd, kStageStdout);
  if (!Redirect(stderr_fd, STDERR_FILENO)) ChildFail(pipe_fd, kStageStderr);

  // Keep no inherited descriptors beyond stdio; the error pipe is already
  // close-on-exec and reports exec failures.
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    for (int fd = 3; fd <= max_fd; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  ::execve(path, argv, envp);
  ChildFail(pipe_fd, kStageExec);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(Options options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("Subprocess: empty argv");
  const std::string& program = options.argv[0];

  // Everything the child needs is prepared here: after fork it may only make
  // async-signal-safe calls (the parent may have other threads).
  std::vector<std::string> env = BuildEnvironment(options.env_overrides);
  absl::StatusOr<std::string> path = ResolveProgram(program, env);
  if (!path.ok()) return path.status();
  std::vector<char*> argv_ptrs;
  for (std::string& arg : options.argv) argv_ptrs.push_back(arg.data());
  argv_ptrs.push_back(nullptr);
  std::vector<char*> env_ptrs;
  for (std::string& kv : env) env_ptrs.push_back(kv.data());
  env_ptrs.push_back(nullptr);

  struct rlimit nofile;
  int max_fd = 4095;
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
    max_fd = static_cast<int>(std::min<rlim_t>(nofile.rlim_cur, 1 << 20)) - 1;
  }

  absl::StatusOr<int> stdout_fd = OpenForRedirect(options.stdout_path, program);
  if (!stdout_fd.ok()) return stdout_fd.status();
  absl::StatusOr<int> stderr_fd = OpenForRedirect(options.stderr_path, program);
  if (!stderr_fd.ok()) {
    CloseIfOpen(*stdout_fd);
    return stderr_fd.status();
  }
  int error_pipe[2];
  if (::pipe2(error_pipe, O_CLOEXEC) != 0) {
    absl::Status status = ErrnoStatus(errno, absl::StrCat("cannot start ", program, ": pipe"));
    CloseIfOpen(*stdout_fd);
    CloseIfOpen(*stderr_fd);
    return status;
  }

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    RunChild(parent, error_pipe[1], *stdout_fd, *stderr_fd, max_fd, path->c_str(), argv_ptrs.data(),
             env_ptrs.data());
  }
  int fork_errno = errno;
  ::close(error_pipe[1]);
  CloseIfOpen(*stdout_fd);
  CloseIfOpen(*stderr_fd);
  if (pid < 0) {
    ::close(error_pipe[0]);
    return ErrnoStatus(fork_errno, absl::StrCat("cannot start ", program, ": fork"));
  }

  // The pipe closes on a successful exec (EOF) or carries the failure.
  ChildFailure failure{0, 0};
  ssize_t n;
  do {
    n = ::read(error_pipe[0], &failure, sizeof(failure));
  } while (n < 0 && errno == EINTR);
  ::close(error_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof(failure))) {
    int wstatus;
    while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    const char* what = failure.stage == kStageExec     ? "exec"
                       : failure.stage == kStageStdout ? "redirect stdout"
                       : failure.stage == kStageStderr ? "redirect stderr"
                                                       : "set up child";
    return ErrnoStatus(failure.error,
                       absl::StrCat("cannot start ", program, " (", *path, "): ", what));
  }
  return std::unique_ptr<Subprocess>(new Subprocess(std::move(options), pid));
}

Subprocess::~Subprocess() {
  if (exit_status_.has_value() || !options_.kill_on_destroy) return;
  ::kill(pid_, SIGKILL);
  Poll(/*block=*/true).IgnoreError();
}

absl::Status Subprocess::Poll(bool block) {
  if (exit_status_.has_value()) return absl::OkStatus();
  int wstatus = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &wstatus, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    return ErrnoStatus(errno, absl::StrCat("waitpid for ", program(), " (pid ", pid_, ")"));
  }
  if (r == 0) return absl::OkStatus();  // still running
  if (WIFEXITED(wstatus)) {
    exit_status_ = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    exit_status_ = 128 + WTERMSIG(wstatus);
  }
  return absl::OkStatus();
}

absl::Status Subprocess::Signal(int signo) {
  if (exit_status_.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot signal ", program(), " (pid ", pid_, "): already reaped"));
  }
  if (::kill(pid_, signo) != 0) {
    return ErrnoStatus(errno, absl::StrCat("cannot signal ", program(), " (pid ", pid_, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Subprocess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::Status status = Poll(/*block=*/false);
    if (!status.ok()) return status;
    if (exit_status_.has_value()) return *exit_status_;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat(
          program(), " (pid ", pid_, ") still running after ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(std::min(left, kPollInterval));
  }
}

bool Subprocess::Running() {
  // A waitpid error (e.g. someone else reaped the child) counts as not running.
  return Poll(/*block=*/false).ok() && !exit_status_.has_value();
}

absl::StatusOr<std::string> CurrentExecutablePath() {
  std::string buffer(PATH_MAX, '\0');
  ssize_t n = ::readlink("/proc/self/exe", buffer.data(), buffer.size());
  if (n < 0) return ErrnoStatus(errno, "cannot resolve /proc/self/exe");
  if (static_cast<size_t>(n) >= buffer.size()) {
    return absl::InternalError("cannot resolve /proc/self/exe: path too long");
  }
  buffer.resize(static_cast<size_t>(n));
  return buffer;
}

absl::StatusOr<std::string> WaitForFile(const std::string& path, Subprocess* child,
                                        absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    // Check the child before the file so that a file written just before the
    // child exited is still seen by the read below.
    const bool child_exited = child != nullptr && !child->Running();
    absl::StatusOr<std::string> contents = ReadFile(path);
    if (contents.ok()) {
      absl::string_view trimmed = absl::StripAsciiWhitespace(*contents);
      if (!trimmed.empty()) return std::string(trimmed);
    } else if (!absl::IsNotFound(contents.status())) {
      return contents.status();
    }
    if (child_exited) {
      absl::StatusOr<int> exit_status = child->Wait(absl::ZeroDuration());
      return absl::FailedPreconditionError(absl::StrCat(
          child->program(), " (pid ", child->pid(), ") exited",
          exit_status.ok() ? absl::StrCat(" with status ", *exit_status) : std::string(),
          " before writing ", path));
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          absl::StrCat("timed out after ", absl::FormatDuration(timeout), " waiting for ", path));
    }
    absl::SleepFor(std::min(left, kPollInterval));
  }
}

}  // namespace retort
