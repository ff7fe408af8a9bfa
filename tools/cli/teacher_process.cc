#include "tools/cli/teacher_process.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace retort::cli {
namespace {

std::string LogTail(const std::string& path) {
  absl::StatusOr<std::string> log = ReadFile(path);
  if (!log.ok() || log->empty()) return "(no output)";
  return log->size() > 2000 ? log->substr(log->size() - 2000) : *log;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TeacherProcess>> TeacherProcess::Start(const Options& options) {
  RETORT_RETURN_IF_ERROR(MakeDirs(options.scratch_dir));
  RETORT_ASSIGN_OR_RETURN(std::string self, CurrentExecutablePath());
  std::unique_ptr<TeacherProcess> process(new TeacherProcess());
  const std::string port_file = options.scratch_dir + "/teacher.port";
  std::remove(port_file.c_str());
  process->log_path_ = options.scratch_dir + "/teacher.log";
  Subprocess::Options child;
  child.argv = {self,
                "teacher",
                "serve",
                "--checkpoint=" + options.checkpoint,
                "--listen=127.0.0.1:0",
                "--port_file=" + port_file,
                "--threads=1"};
  child.argv.insert(child.argv.end(), options.extra_flags.begin(), options.extra_flags.end());
  child.stderr_path = process->log_path_;
  child.stdout_path = process->log_path_ + ".out";
  RETORT_ASSIGN_OR_RETURN(process->child_, Subprocess::Start(child));
  absl::StatusOr<std::string> port =
      WaitForFile(port_file, process->child_.get(), options.start_timeout);
  if (!port.ok()) {
    return absl::Status(
        port.status().code(),
        absl::StrCat("the teacher server did not start: ", port.status().message(), "\n--- ",
                     process->log_path_, " ---\n", LogTail(process->log_path_)));
  }
  process->address_ = absl::StrCat("127.0.0.1:", *port);
  return process;
}

absl::StatusOr<int> TeacherProcess::Stop(absl::Duration timeout) {
  if (child_->Running()) RETORT_RETURN_IF_ERROR(child_->Signal(SIGTERM));
  return child_->Wait(timeout);
}

TeacherProcess::~TeacherProcess() {
  if (child_ == nullptr) return;
  // Longer than the server's default --drain_timeout (30 s).
  absl::StatusOr<int> exit = Stop(absl::Seconds(45));
  if (!exit.ok()) {
    child_->Signal(SIGKILL).IgnoreError();
    child_->Wait(absl::Seconds(5)).IgnoreError();
  }
}

}  // namespace retort::cli
