// End-to-end tests of the teacher pool and exact resume with real processes
// on 127.0.0.1: teacher servers in --deterministic mode and `retort distill`
// trainers that are killed, starved, and resumed while teachers are killed,
// frozen and drained. Every run is compared with one uninterrupted reference
// run: the per-step losses and the final parameters must match bit for bit.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/subprocess.h"
#include "tests/cli/cli_test_util.h"

namespace retort {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kTotalSteps = 6 * 48;  // 6 epochs of (1250 - 50) / 25 batches
constexpr absl::Duration kBound = absl::Seconds(300);

struct RunLog {
  std::map<int64_t, double> step_loss;  // the last line logged for each step
  std::map<int64_t, int> times_logged;
  nlohmann::json result;
};

struct Teacher {
  std::unique_ptr<Subprocess> process;
  std::string address;
};

class PoolE2ETest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ =
        new fs::path(fs::temp_directory_path() / ("retort_pool_e2e_" + std::to_string(::getpid())));
    fs::create_directories(*dir_ / "data");
    clitest::WriteDataset(*dir_ / "data", 1250, 100);
    clitest::Result teacher =
        RunSync("train --arch=cnn --hidden=8,16,32 --epochs=1 --batch_size=50 --out_dir=" +
                Path("teacher") + " " + Data());
    ASSERT_EQ(teacher.exit_code, 0) << teacher.err;

    Teacher t = StartTeacher("reference_teacher");
    ASSERT_NE(t.process, nullptr);
    clitest::Result reference = RunSync(absl::StrJoin(StudentArgs(t.address, "reference"), " "));
    ASSERT_EQ(reference.exit_code, 0) << reference.err;
    reference_ = new RunLog(LoadRun("reference"));
    ASSERT_EQ(reference_->step_loss.size(), static_cast<size_t>(kTotalSteps));
  }

  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete reference_;
  }

  static std::string Path(const std::string& name) { return (*dir_ / name).string(); }
  static std::string Data() {
    return "--data_dir=" + Path("data") + " --validation_size=50 --threads=1";
  }
  static clitest::Result RunSync(const std::string& args) {
    return clitest::RunBinary(RETORT_BINARY, args, *dir_);
  }

  // The student run every test repeats: dropout and jitter exercise both
  // random streams, checkpoints every 10 steps and at epoch ends.
  static std::vector<std::string> StudentArgs(const std::string& teachers, const std::string& out) {
    return {"distill",
            "--teachers=" + teachers,
            "--arch=mlp",
            "--hidden=32",
            "--dropout=0.2",
            "--jitter=1",
            "--epochs=6",
            "--batch_size=25",
            "--temperature=2",
            "--alpha=0.5",
            "--teacher_cache_mb=0",
            "--log_every_steps=1",
            "--checkpoint_every_steps=10",
            "--out_dir=" + Path(out),
            "--data_dir=" + Path("data"),
            "--validation_size=50",
            "--threads=1"};
  }

  static Teacher StartTeacher(const std::string& name) {
    Subprocess::Options o;
    o.argv = {RETORT_BINARY,
              "teacher",
              "serve",
              "--checkpoint=" + Path("teacher") + "/best.pt",
              "--listen=127.0.0.1:0",
              "--port_file=" + Path(name + ".port"),
              "--deterministic",
              "--threads=1"};
    o.stderr_path = Path(name + ".log");
    std::remove(Path(name + ".port").c_str());
    absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(o);
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return {};
    absl::StatusOr<std::string> port =
        WaitForFile(Path(name + ".port"), process->get(), absl::Seconds(60));
    EXPECT_TRUE(port.ok()) << port.status();
    if (!port.ok()) return {};
    return {*std::move(process), "127.0.0.1:" + *port};
  }

  static std::unique_ptr<Subprocess> StartTrainer(std::vector<std::string> args,
                                                  const std::string& name) {
    Subprocess::Options o;
    o.argv = {RETORT_BINARY};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.stderr_path = Path(name + ".trainer.log");
    absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(o);
    EXPECT_TRUE(process.ok()) << process.status();
    return process.ok() ? *std::move(process) : nullptr;
  }

  static RunLog LoadRun(const std::string& out) {
    RunLog run;
    absl::StatusOr<std::string> metrics = ReadFile(Path(out) + "/metrics.jsonl");
    if (metrics.ok()) {
      for (absl::string_view line : absl::StrSplit(*metrics, '\n', absl::SkipEmpty())) {
        nlohmann::json json = nlohmann::json::parse(line, nullptr, false);
        if (!json.is_object() || json.value("event", "") != "step") continue;
        const int64_t step = json["step"].get<int64_t>();
        run.step_loss[step] = json["step_loss"].get<double>();
        ++run.times_logged[step];
      }
    }
    absl::StatusOr<std::string> result = ReadFile(Path(out) + "/result.json");
    if (result.ok()) run.result = nlohmann::json::parse(*result, nullptr, false);
    return run;
  }

  // Polls the run's metrics until a step >= `step` is logged; returns it.
  static int64_t WaitForStep(const std::string& out, int64_t step, Subprocess* trainer) {
    const absl::Time deadline = absl::Now() + kBound;
    while (absl::Now() < deadline) {
      RunLog run = LoadRun(out);
      if (!run.step_loss.empty() && run.step_loss.rbegin()->first >= step) {
        return run.step_loss.rbegin()->first;
      }
      if (!trainer->Running()) {
        ADD_FAILURE() << "the trainer exited before step " << step << ":\n"
                      << ReadFile(Path(out + ".trainer.log")).value_or("");
        return -1;
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
    ADD_FAILURE() << "step " << step << " never came";
    return -1;
  }

  static int ExitOf(Subprocess* process) {
    absl::StatusOr<int> exit = process->Wait(kBound);
    EXPECT_TRUE(exit.ok()) << exit.status();
    return exit.ok() ? *exit : -1;
  }

  // Steps after `from` match the reference bit for bit, and so do the final
  // parameters.
  static void ExpectMatchesReference(const RunLog& run, int64_t from) {
    ASSERT_TRUE(run.result.is_object()) << "no result.json";
    EXPECT_EQ(run.result["steps"], kTotalSteps);
    EXPECT_EQ(run.result["parameters_sha256"], reference_->result["parameters_sha256"]);
    int compared = 0;
    for (const auto& [step, loss] : reference_->step_loss) {
      if (step <= from) continue;
      auto it = run.step_loss.find(step);
      ASSERT_NE(it, run.step_loss.end()) << "step " << step << " missing";
      EXPECT_EQ(it->second, loss) << "step " << step;
      ++compared;
    }
    EXPECT_EQ(compared, kTotalSteps - from);
  }

  static std::vector<std::string> CheckpointDirs(const std::string& out,
                                                 const std::string& prefix) {
    std::vector<std::string> names;
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(Path(out) + "/checkpoints", error)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind(prefix, 0) == 0) names.push_back(name);
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  static fs::path* dir_;
  static RunLog* reference_;
};

fs::path* PoolE2ETest::dir_ = nullptr;
RunLog* PoolE2ETest::reference_ = nullptr;

TEST_F(PoolE2ETest, ReferenceRunKeepsTheNewestCheckpointsAndLogsEveryStepOnce) {
  for (const auto& [step, times] : reference_->times_logged) EXPECT_EQ(times, 1) << step;
  EXPECT_EQ(CheckpointDirs("reference", "ckpt-").size(), 3u);
  EXPECT_EQ(CheckpointDirs("reference", "ckpt-").back(), "ckpt-000000000288");
  EXPECT_TRUE(CheckpointDirs("reference", ".staging-").empty());
  EXPECT_GT(reference_->result["teacher_wait_seconds"].get<double>(), 0);
}

// 1. SIGKILL at a random step, then --resume=auto: the same course, bit for bit.
TEST_F(PoolE2ETest, TrainerKilledAtARandomStepResumesBitForBit) {
  Teacher a = StartTeacher("kill_a"), b = StartTeacher("kill_b");
  ASSERT_NE(a.process, nullptr);
  ASSERT_NE(b.process, nullptr);
  const std::string teachers = a.address + "," + b.address;
  std::random_device random;
  const int64_t kill_at = 30 + static_cast<int64_t>(random() % 170);
  std::cout << "killing the trainer at step " << kill_at << "\n";

  std::unique_ptr<Subprocess> trainer = StartTrainer(StudentArgs(teachers, "killed"), "killed");
  ASSERT_NE(trainer, nullptr);
  ASSERT_GE(WaitForStep("killed", kill_at, trainer.get()), kill_at);
  ASSERT_TRUE(trainer->Signal(SIGKILL).ok());
  EXPECT_EQ(ExitOf(trainer.get()), 128 + SIGKILL);
  const int64_t last_logged = LoadRun("killed").step_loss.rbegin()->first;
  ASSERT_LT(last_logged, kTotalSteps) << "the run ended before the kill";

  std::vector<std::string> args = StudentArgs(teachers, "killed");
  args.push_back("--resume=auto");
  clitest::Result resumed = RunSync(absl::StrJoin(args, " "));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_THAT(resumed.err, HasSubstr("resuming from"));
  RunLog run = LoadRun("killed");
  const int64_t from = run.result["resumed_from_step"].get<int64_t>();
  EXPECT_GT(from, 0);
  EXPECT_LE(from, last_logged);
  ExpectMatchesReference(run, 0);  // steps before the kill matched too
  // The resume dropped the log lines of steps it trained again.
  for (const auto& [step, times] : run.times_logged) EXPECT_EQ(times, 1) << "step " << step;
}

// 2. One of two teachers SIGKILLed mid-run: nothing lost, nothing repeated.
TEST_F(PoolE2ETest, OneOfTwoTeachersKilledLosesNoStep) {
  Teacher a = StartTeacher("dead_a"), b = StartTeacher("dead_b");
  ASSERT_NE(a.process, nullptr);
  ASSERT_NE(b.process, nullptr);
  std::unique_ptr<Subprocess> trainer =
      StartTrainer(StudentArgs(a.address + "," + b.address, "teacher_killed"), "teacher_killed");
  ASSERT_NE(trainer, nullptr);
  ASSERT_GE(WaitForStep("teacher_killed", 60, trainer.get()), 60);
  ASSERT_TRUE(a.process->Signal(SIGKILL).ok());
  ASSERT_EQ(ExitOf(trainer.get()), 0) << ReadFile(Path("teacher_killed.trainer.log")).value_or("");
  RunLog run = LoadRun("teacher_killed");
  ASSERT_EQ(run.times_logged.size(), static_cast<size_t>(kTotalSteps));
  for (const auto& [step, times] : run.times_logged) EXPECT_EQ(times, 1) << "step " << step;
  ExpectMatchesReference(run, 0);
  const std::string log = *ReadFile(Path("teacher_killed.trainer.log"));
  EXPECT_THAT(log, HasSubstr(a.address + " out of service"));
}

// 3. A teacher frozen with SIGSTOP is found out and its work moves on.
TEST_F(PoolE2ETest, FrozenTeacherIsDetectedAndItsWorkMovesOn) {
  Teacher a = StartTeacher("frozen_a"), b = StartTeacher("frozen_b");
  ASSERT_NE(a.process, nullptr);
  ASSERT_NE(b.process, nullptr);
  std::unique_ptr<Subprocess> trainer =
      StartTrainer(StudentArgs(a.address + "," + b.address, "teacher_frozen"), "teacher_frozen");
  ASSERT_NE(trainer, nullptr);
  ASSERT_GE(WaitForStep("teacher_frozen", 60, trainer.get()), 60);
  ASSERT_TRUE(a.process->Signal(SIGSTOP).ok());
  const int exit = ExitOf(trainer.get());
  a.process->Signal(SIGCONT).IgnoreError();
  ASSERT_EQ(exit, 0) << ReadFile(Path("teacher_frozen.trainer.log")).value_or("");
  RunLog run = LoadRun("teacher_frozen");
  for (const auto& [step, times] : run.times_logged) EXPECT_EQ(times, 1) << "step " << step;
  ExpectMatchesReference(run, 0);
  EXPECT_THAT(*ReadFile(Path("teacher_frozen.trainer.log")),
              HasSubstr(a.address + " out of service"));
}

// 4. A teacher drained with SIGTERM: the trainer sees no error.
TEST_F(PoolE2ETest, DrainedTeacherCausesNoError) {
  Teacher a = StartTeacher("drain_a"), b = StartTeacher("drain_b");
  ASSERT_NE(a.process, nullptr);
  ASSERT_NE(b.process, nullptr);
  std::unique_ptr<Subprocess> trainer =
      StartTrainer(StudentArgs(a.address + "," + b.address, "teacher_drained"), "teacher_drained");
  ASSERT_NE(trainer, nullptr);
  ASSERT_GE(WaitForStep("teacher_drained", 60, trainer.get()), 60);
  ASSERT_TRUE(a.process->Signal(SIGTERM).ok());
  EXPECT_EQ(ExitOf(a.process.get()), 0);
  ASSERT_EQ(ExitOf(trainer.get()), 0);
  RunLog run = LoadRun("teacher_drained");
  for (const auto& [step, times] : run.times_logged) EXPECT_EQ(times, 1) << "step " << step;
  ExpectMatchesReference(run, 0);
  // The drain shows only as the pool's note that the teacher left service.
  const std::string log = *ReadFile(Path("teacher_drained.trainer.log"));
  EXPECT_THAT(log, HasSubstr(a.address + " out of service"));
  EXPECT_THAT(log, Not(HasSubstr("warning")));
  EXPECT_THAT(log, Not(HasSubstr("UNAVAILABLE")));
}

// 5. Every teacher gone: a clear error after --teacher_wait, and a checkpoint
// that resumes against a new teacher.
TEST_F(PoolE2ETest, AllTeachersGoneCheckpointsAndResumesElsewhere) {
  Teacher a = StartTeacher("gone_a");
  ASSERT_NE(a.process, nullptr);
  std::vector<std::string> args = StudentArgs(a.address, "teachers_gone");
  args.push_back("--teacher_wait=2");
  std::unique_ptr<Subprocess> trainer = StartTrainer(args, "teachers_gone");
  ASSERT_NE(trainer, nullptr);
  ASSERT_GE(WaitForStep("teachers_gone", 60, trainer.get()), 60);
  ASSERT_TRUE(a.process->Signal(SIGKILL).ok());
  EXPECT_EQ(ExitOf(trainer.get()), 1);
  const std::string log = *ReadFile(Path("teachers_gone.trainer.log"));
  EXPECT_THAT(log, HasSubstr("--teacher_wait"));
  EXPECT_THAT(log, HasSubstr(a.address));
  EXPECT_THAT(log, HasSubstr("continue with --resume=auto"));
  const int64_t last_logged = LoadRun("teachers_gone").step_loss.rbegin()->first;
  ASSERT_LT(last_logged, kTotalSteps);
  // The checkpoint holds the last step that completed.
  char newest[64];
  std::snprintf(newest, sizeof(newest), "ckpt-%012lld", static_cast<long long>(last_logged));
  EXPECT_EQ(CheckpointDirs("teachers_gone", "ckpt-").back(), newest);

  Teacher c = StartTeacher("gone_c");
  ASSERT_NE(c.process, nullptr);
  std::vector<std::string> resume = StudentArgs(c.address, "teachers_gone");
  resume.push_back("--resume=auto");
  clitest::Result resumed = RunSync(absl::StrJoin(resume, " "));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  RunLog run = LoadRun("teachers_gone");
  EXPECT_EQ(run.result["resumed_from_step"], last_logged);
  ExpectMatchesReference(run, 0);
}

// 6. The trainer killed while writing a checkpoint: the resume takes the
// newest complete one; a corrupt newest one is skipped with a warning.
TEST_F(PoolE2ETest, CrashWhileCheckpointingResumesFromThePreviousComplete) {
  Teacher a = StartTeacher("crash_a");
  ASSERT_NE(a.process, nullptr);
  std::vector<std::string> args = StudentArgs(a.address, "crashed");
  args.push_back("--testonly_crash_while_checkpointing_step=120");
  std::unique_ptr<Subprocess> trainer = StartTrainer(args, "crashed");
  ASSERT_NE(trainer, nullptr);
  EXPECT_EQ(ExitOf(trainer.get()), 128 + SIGKILL);
  EXPECT_EQ(CheckpointDirs("crashed", ".staging-"),
            std::vector<std::string>{".staging-000000000120"});
  std::vector<std::string> complete = CheckpointDirs("crashed", "ckpt-");
  ASSERT_EQ(complete.size(), 3u);
  EXPECT_EQ(complete.back(), "ckpt-000000000110");

  // Also damage the newest complete checkpoint: resume must fall back past it.
  const std::string damaged = Path("crashed") + "/checkpoints/" + complete.back() + "/training.pt";
  std::string bytes = *ReadFile(damaged);
  ASSERT_TRUE(WriteFileAtomically(damaged, bytes.substr(0, bytes.size() / 2)).ok());

  std::vector<std::string> resume = StudentArgs(a.address, "crashed");
  resume.push_back("--resume=auto");
  clitest::Result resumed = RunSync(absl::StrJoin(resume, " "));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_THAT(resumed.err, HasSubstr("warning"));
  EXPECT_THAT(resumed.err, HasSubstr(complete.back()));
  EXPECT_THAT(resumed.err, HasSubstr("resuming from"));
  RunLog run = LoadRun("crashed");
  EXPECT_EQ(run.result["resumed_from_step"], 100);
  ExpectMatchesReference(run, 0);
  EXPECT_TRUE(CheckpointDirs("crashed", ".staging-").empty());
}

}  // namespace
}  // namespace retort
