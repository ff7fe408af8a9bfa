// TeacherProcess: a `retort teacher serve` child process on loopback, for
// commands that bring their own teacher (the demo, the benchmarks).
//
// Start returns once the child is SERVING and has written its port; the
// destructor sends SIGTERM and waits for the drain (SIGKILL after a grace
// period). The child dies with this process.
#ifndef RETORT_TOOLS_CLI_TEACHER_PROCESS_H_
#define RETORT_TOOLS_CLI_TEACHER_PROCESS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/subprocess.h"

namespace retort::cli {

class TeacherProcess {
 public:
  struct Options {
    std::string checkpoint;
    std::vector<std::string> extra_flags;  // e.g. --deterministic, --bf16
    std::string scratch_dir;               // port file and log go here
    absl::Duration start_timeout = absl::Seconds(120);
  };

  // Errors carry the tail of the child's log.
  static absl::StatusOr<std::unique_ptr<TeacherProcess>> Start(const Options& options);
  ~TeacherProcess();

  const std::string& address() const { return address_; }
  const std::string& log_path() const { return log_path_; }
  // Sends a signal (benchmarks kill or freeze teachers on purpose).
  absl::Status Signal(int signo) { return child_->Signal(signo); }
  // SIGTERM and wait for the child's exit status (DEADLINE_EXCEEDED if it
  // does not exit within `timeout`).
  absl::StatusOr<int> Stop(absl::Duration timeout);

 private:
  TeacherProcess() = default;
  std::unique_ptr<Subprocess> child_;
  std::string address_;
  std::string log_path_;
};

}  // namespace retort::cli

#endif  // RETORT_TOOLS_CLI_TEACHER_PROCESS_H_
