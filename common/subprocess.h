// A child process run with fork + exec, for tests and tools that start real
// servers (teacher, workers) as separate processes.
//
// The child is tied to its parent: it gets SIGKILL when the thread that
// started it exits (PR_SET_PDEATHSIG), so a crashed test leaves no strays.
// Start() from a long-lived thread (e.g. main). Inherited file descriptors
// other than 0, 1 and 2 are not passed on to the child.
#ifndef RETORT_COMMON_SUBPROCESS_H_
#define RETORT_COMMON_SUBPROCESS_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace retort {

// One child process, owned by this object. Not thread-safe.
class Subprocess {
 public:
  struct Options {
    // argv[0] is the program: a path containing '/', or a name looked up on
    // the PATH the child will see.
    std::vector<std::string> argv;
    // Added to, or replacing entries of, the parent's environment.
    std::vector<std::pair<std::string, std::string>> env_overrides;
    std::string stdout_path;  // empty: inherit; else truncate and redirect to this file
    std::string stderr_path;  // empty: inherit; else truncate and redirect to this file
    // SIGKILL and reap the child in the destructor if it has not been reaped.
    // When false, an unreaped child is left running (still killed when the
    // parent dies).
    bool kill_on_destroy = true;
  };

  // Starts the child. Fails with an error naming the program when it cannot
  // be found, opened or executed, or when a redirection file cannot be opened.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(Options options);

  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  ~Subprocess();

  pid_t pid() const { return pid_; }
  const std::string& program() const { return options_.argv[0]; }

  // Sends `signo`. FAILED_PRECONDITION once the child has been reaped.
  absl::Status Signal(int signo);

  // Waits up to `timeout` (polling every few milliseconds) for the child to
  // exit and reaps it. Returns its exit status: the exit code 0..255, or
  // 128 + signal number if a signal killed it. DEADLINE_EXCEEDED if it is
  // still running. Once reaped, returns the same status again at once.
  absl::StatusOr<int> Wait(absl::Duration timeout);

  // Non-blocking: true while the child has not exited. Reaps it if it has.
  bool Running();

 private:
  Subprocess(Options options, pid_t pid) : options_(std::move(options)), pid_(pid) {}
  // One waitpid call; records the exit status when the child has exited.
  absl::Status Poll(bool block);

  Options options_;
  pid_t pid_;
  std::optional<int> exit_status_;  // set once reaped
};

// Path of the running executable (/proc/self/exe resolved).
absl::StatusOr<std::string> CurrentExecutablePath();

// Polls until `path` exists and is non-empty, and returns its contents with
// surrounding whitespace trimmed. Writers should create the file atomically
// (write elsewhere, then rename). Fails early if `child` (may be null) exits
// first, with an error naming the program and its exit status, and with
// DEADLINE_EXCEEDED after `timeout`.
absl::StatusOr<std::string> WaitForFile(const std::string& path, Subprocess* child,
                                        absl::Duration timeout);

}  // namespace retort

#endif  // RETORT_COMMON_SUBPROCESS_H_
