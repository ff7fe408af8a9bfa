#include "common/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace retort {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Generous: only reached if something is broken.
constexpr absl::Duration kLongTimeout = absl::Seconds(30);

std::string MakeTempDir() {
  std::string pattern = ::testing::TempDir() + "/subprocess_test.XXXXXX";
  char* dir = ::mkdtemp(pattern.data());
  EXPECT_NE(dir, nullptr) << std::strerror(errno);
  return pattern;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Subprocess::Options Command(std::vector<std::string> argv) {
  Subprocess::Options options;
  options.argv = std::move(argv);
  return options;
}

std::unique_ptr<Subprocess> StartOrDie(Subprocess::Options options) {
  absl::StatusOr<std::unique_ptr<Subprocess>> child = Subprocess::Start(std::move(options));
  EXPECT_TRUE(child.ok()) << child.status();
  return child.ok() ? std::move(*child) : nullptr;
}

// True once `pid` no longer names a live process (gone, or a zombie that
// some other reaper has not collected yet).
bool ProcessGone(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] == 'Z';
}

TEST(SubprocessTest, ReturnsExitCode) {
  auto child = StartOrDie(Command({"/bin/sh", "-c", "exit 3"}));
  ASSERT_NE(child, nullptr);
  EXPECT_GT(child->pid(), 0);
  absl::StatusOr<int> status = child->Wait(kLongTimeout);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, 3);
  EXPECT_FALSE(child->Running());
  // Waiting again returns the recorded status.
  EXPECT_EQ(child->Wait(absl::ZeroDuration()).value_or(-1), 3);
}

TEST(SubprocessTest, FindsProgramOnPath) {
  auto child = StartOrDie(Command({"sh", "-c", "exit 0"}));
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->Wait(kLongTimeout).value_or(-1), 0);
}

TEST(SubprocessTest, WaitTimesOutThenSignalTerminates) {
  auto child = StartOrDie(Command({"sleep", "30"}));
  ASSERT_NE(child, nullptr);
  absl::StatusOr<int> status = child->Wait(absl::Milliseconds(100));
  EXPECT_TRUE(absl::IsDeadlineExceeded(status.status())) << status.status();
  EXPECT_TRUE(child->Running());

  ASSERT_TRUE(child->Signal(SIGTERM).ok());
  status = child->Wait(kLongTimeout);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, 128 + SIGTERM);
  EXPECT_FALSE(child->Running());
  EXPECT_TRUE(absl::IsFailedPrecondition(child->Signal(SIGTERM)));
}

TEST(SubprocessTest, RedirectsStdoutAndStderr) {
  const std::string dir = MakeTempDir();
  const std::string out = dir + "/out.txt";
  const std::string err = dir + "/err.txt";
  {
    std::ofstream stale(out);
    stale << "stale contents that must be truncated\n";
  }
  Subprocess::Options options = Command({"/bin/sh", "-c", "echo hello; echo oops >&2"});
  options.stdout_path = out;
  options.stderr_path = err;
  auto child = StartOrDie(std::move(options));
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->Wait(kLongTimeout).value_or(-1), 0);
  EXPECT_EQ(Slurp(out), "hello\n");
  EXPECT_EQ(Slurp(err), "oops\n");
}

TEST(SubprocessTest, AppliesEnvironmentOverrides) {
  ASSERT_EQ(::setenv("RETORT_SUBPROCESS_TEST_REPLACED", "parent", 1), 0);
  ASSERT_EQ(::setenv("RETORT_SUBPROCESS_TEST_KEPT", "kept", 1), 0);
  const std::string out = MakeTempDir() + "/env.txt";
  Subprocess::Options options = Command({"/usr/bin/env"});
  options.env_overrides = {{"RETORT_SUBPROCESS_TEST_REPLACED", "child"},
                           {"RETORT_SUBPROCESS_TEST_ADDED", "a b=c"}};
  options.stdout_path = out;
  auto child = StartOrDie(std::move(options));
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->Wait(kLongTimeout).value_or(-1), 0);
  const std::string env = Slurp(out);
  EXPECT_THAT(env, HasSubstr("\nRETORT_SUBPROCESS_TEST_REPLACED=child\n"));
  EXPECT_THAT(env, Not(HasSubstr("RETORT_SUBPROCESS_TEST_REPLACED=parent")));
  EXPECT_THAT(env, HasSubstr("\nRETORT_SUBPROCESS_TEST_ADDED=a b=c\n"));
  EXPECT_THAT(env, HasSubstr("\nRETORT_SUBPROCESS_TEST_KEPT=kept\n"));
  ::unsetenv("RETORT_SUBPROCESS_TEST_REPLACED");
  ::unsetenv("RETORT_SUBPROCESS_TEST_KEPT");
}

TEST(SubprocessTest, NonexistentProgramIsAClearError) {
  absl::StatusOr<std::unique_ptr<Subprocess>> child =
      Subprocess::Start(Command({"/nonexistent/retort_no_such_program", "--flag"}));
  ASSERT_FALSE(child.ok());
  EXPECT_TRUE(absl::IsNotFound(child.status())) << child.status();
  EXPECT_THAT(child.status().message(), HasSubstr("/nonexistent/retort_no_such_program"));

  child = Subprocess::Start(Command({"retort_no_such_program_on_path"}));
  ASSERT_FALSE(child.ok());
  EXPECT_TRUE(absl::IsNotFound(child.status())) << child.status();
  EXPECT_THAT(child.status().message(), HasSubstr("retort_no_such_program_on_path"));
}

TEST(SubprocessTest, NonExecutableFileIsAClearError) {
  const std::string path = MakeTempDir() + "/not_executable";
  { std::ofstream(path) << "#!/bin/sh\nexit 0\n"; }
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  absl::StatusOr<std::unique_ptr<Subprocess>> child = Subprocess::Start(Command({path}));
  ASSERT_FALSE(child.ok());
  EXPECT_THAT(child.status().message(), HasSubstr(path));
}

TEST(SubprocessTest, UnwritableRedirectIsAClearError) {
  Subprocess::Options options = Command({"/bin/true"});
  options.stdout_path = "/nonexistent/dir/out.txt";
  absl::StatusOr<std::unique_ptr<Subprocess>> child = Subprocess::Start(std::move(options));
  ASSERT_FALSE(child.ok());
  EXPECT_THAT(child.status().message(), HasSubstr("/nonexistent/dir/out.txt"));
  EXPECT_THAT(child.status().message(), HasSubstr("/bin/true"));
}

TEST(SubprocessTest, DoesNotPassOnInheritedDescriptors) {
  // An fd without close-on-exec, at a number no shell uses for itself.
  const int fd = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::dup2(fd, 77), 77);
  ::close(fd);
  auto child = StartOrDie(Command({"/bin/sh", "-c", "test -e /proc/self/fd/77 && exit 1; exit 0"}));
  ::close(77);
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->Wait(kLongTimeout).value_or(-1), 0);
}

TEST(SubprocessTest, DestructorKillsAndReapsRunningChild) {
  auto child = StartOrDie(Command({"sleep", "30"}));
  ASSERT_NE(child, nullptr);
  const pid_t pid = child->pid();
  ASSERT_EQ(::kill(pid, 0), 0);
  child.reset();
  // Reaped by the destructor: no longer our child, and no such process (a
  // reused pid within these microseconds is not a realistic concern).
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
  EXPECT_EQ(::kill(pid, 0), -1);
}

TEST(SubprocessTest, KeepsChildWhenKillOnDestroyIsOff) {
  Subprocess::Options options = Command({"sleep", "30"});
  options.kill_on_destroy = false;
  auto child = StartOrDie(std::move(options));
  ASSERT_NE(child, nullptr);
  const pid_t pid = child->pid();
  child.reset();
  EXPECT_EQ(::kill(pid, 0), 0);
  // Clean up by hand.
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(wstatus));
}

TEST(SubprocessTest, ChildDiesWithItsParent) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t middle = ::fork();
  ASSERT_GE(middle, 0);
  if (middle == 0) {
    // The intermediate parent: start a long child, report its pid, and die
    // without running destructors.
    ::close(pipe_fds[0]);
    absl::StatusOr<std::unique_ptr<Subprocess>> child =
        Subprocess::Start(Command({"sleep", "300"}));
    pid_t pid = child.ok() ? (*child)->pid() : -1;
    ssize_t written = ::write(pipe_fds[1], &pid, sizeof(pid));
    ::_exit(written == sizeof(pid) ? 0 : 1);
  }
  ::close(pipe_fds[1]);
  pid_t grandchild = -1;
  ASSERT_EQ(::read(pipe_fds[0], &grandchild, sizeof(grandchild)),
            static_cast<ssize_t>(sizeof(grandchild)));
  ::close(pipe_fds[0]);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(middle, &wstatus, 0), middle);
  ASSERT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
  ASSERT_GT(grandchild, 0);

  // Far shorter than the child's own sleep, so only the parent's death can end it.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!ProcessGone(grandchild) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_TRUE(ProcessGone(grandchild)) << "pid " << grandchild << " outlived its parent";
  if (!ProcessGone(grandchild)) ::kill(grandchild, SIGKILL);
}

TEST(SubprocessTest, CurrentExecutablePathNamesThisTest) {
  absl::StatusOr<std::string> path = CurrentExecutablePath();
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(path->front(), '/');
  EXPECT_THAT(*path, HasSubstr("subprocess_test"));
  EXPECT_EQ(::access(path->c_str(), X_OK), 0);
}

TEST(WaitForFileTest, ReturnsContentsWrittenByChild) {
  const std::string dir = MakeTempDir();
  const std::string file = dir + "/f";
  auto child = StartOrDie(Command(
      {"/bin/sh", "-c",
       absl::StrCat("sleep 0.2; echo 1234 > '", file, ".tmp'; mv '", file, ".tmp' '", file, "'")}));
  ASSERT_NE(child, nullptr);
  absl::StatusOr<std::string> contents = WaitForFile(file, child.get(), kLongTimeout);
  ASSERT_TRUE(contents.ok()) << contents.status();
  EXPECT_EQ(*contents, "1234");
  EXPECT_EQ(child->Wait(kLongTimeout).value_or(-1), 0);
}

TEST(WaitForFileTest, FailsWhenChildExitsWithoutWriting) {
  const std::string file = MakeTempDir() + "/never";
  auto child = StartOrDie(Command({"/bin/sh", "-c", "sleep 0.1; exit 7"}));
  ASSERT_NE(child, nullptr);
  absl::StatusOr<std::string> contents = WaitForFile(file, child.get(), kLongTimeout);
  ASSERT_FALSE(contents.ok());
  EXPECT_FALSE(absl::IsDeadlineExceeded(contents.status())) << contents.status();
  EXPECT_THAT(contents.status().message(), HasSubstr("exited with status 7"));
  EXPECT_THAT(contents.status().message(), HasSubstr(file));
}

TEST(WaitForFileTest, TimesOutWithoutChild) {
  const std::string file = MakeTempDir() + "/never";
  absl::StatusOr<std::string> contents = WaitForFile(file, nullptr, absl::Milliseconds(50));
  EXPECT_TRUE(absl::IsDeadlineExceeded(contents.status())) << contents.status();
}

TEST(WaitForFileTest, IgnoresAnEmptyFileUntilItIsFilled) {
  const std::string file = MakeTempDir() + "/f";
  { std::ofstream touch(file); }
  auto child = StartOrDie(
      Command({"/bin/sh", "-c", absl::StrCat("sleep 0.2; printf ' 42\\n' > '", file, "'")}));
  ASSERT_NE(child, nullptr);
  absl::StatusOr<std::string> contents = WaitForFile(file, child.get(), kLongTimeout);
  ASSERT_TRUE(contents.ok()) << contents.status();
  EXPECT_EQ(*contents, "42");
}

}  // namespace
}  // namespace retort
