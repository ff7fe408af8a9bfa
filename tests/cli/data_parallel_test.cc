// Data-parallel training with real processes: `retort train` launched by
// torchrun (Debian's python3-torch, `python3 -m torch.distributed.run`) as
// two ranks on c10d Gloo, against the same run as one process with the same
// global batch.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/subprocess.h"
#include "models/checkpoint_file.h"
#include "tests/cli/cli_test_util.h"
#include "tests/teacher/test_teachers.h"

namespace retort {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using testutil::FreePort;

std::map<std::string, torch::Tensor> Parameters(const std::string& path) {
  absl::StatusOr<models::LoadedCheckpoint> loaded = models::ReadCheckpoint(path);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  std::map<std::string, torch::Tensor> out;
  if (!loaded.ok()) return out;
  for (const auto& item : loaded->model->named_parameters()) out[item.key()] = item.value();
  return out;
}

class DataParallelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("retort_ddp_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_ / "data");
    clitest::WriteDataset(dir_ / "data", 550, 50);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  std::string Args(const std::string& out) const {
    // No dropout or jitter: the ranks' random streams differ by design.
    return "train --arch=mlp --hidden=32 --epochs=2 --batch_size=50 --log_every_steps=0 "
           "--data_dir=" +
           Path("data") + " --validation_size=50 --threads=1 --out_dir=" + Path(out);
  }
  fs::path dir_;
};

TEST_F(DataParallelTest, TwoRanksUnderTorchrunMatchOneProcessWithTheSameGlobalBatch) {
  if (std::system("/usr/bin/python3 -c 'import torch.distributed.run' 2>/dev/null") != 0) {
    GTEST_SKIP() << "Debian's python3-torch (torchrun) is not installed";
  }
  clitest::Result one = clitest::RunBinary(RETORT_BINARY, Args("one"), dir_);
  ASSERT_EQ(one.exit_code, 0) << one.err;

  // Python 3.11 drops the 0 flag value that torchrun's --redirects/--tee
  // default to (Debian's torch 1.13): name stderr explicitly.
  const std::string torchrun =
      "/usr/bin/python3 -m torch.distributed.run --no_python "
      "--nproc_per_node=2 --redirects=2 --tee=2 --log_dir=" +
      Path("torchrun_logs") + " --master_port=" + std::to_string(FreePort()) + " " + RETORT_BINARY +
      " " + Args("two") + " >" + Path("two.out") + " 2>&1";
  ASSERT_EQ(std::system(torchrun.c_str()), 0) << ReadFile(Path("two.out")).value_or("");
  EXPECT_THAT(*ReadFile(Path("two.out")), HasSubstr("2 ranks (c10d gloo)"));

  // 500 examples, global batch 50: 20 steps; the last checkpoint is step 20.
  const std::string last = "/checkpoints/ckpt-000000000020/";
  std::map<std::string, torch::Tensor> alone = Parameters(Path("one") + last + "training.pt");
  std::map<std::string, torch::Tensor> rank0 = Parameters(Path("two") + last + "training-rank0.pt");
  std::map<std::string, torch::Tensor> rank1 = Parameters(Path("two") + last + "training-rank1.pt");
  ASSERT_FALSE(alone.empty());
  ASSERT_EQ(rank0.size(), alone.size());
  for (const auto& [name, value] : alone) {
    EXPECT_TRUE(torch::equal(rank0[name], rank1[name])) << name;
    EXPECT_LT((rank0[name] - value).abs().max().item<double>(), 1e-5) << name;
  }
  nlohmann::json result = nlohmann::json::parse(*ReadFile(Path("two/result.json")));
  EXPECT_EQ(result["steps"], 20);
  // Each rank evaluated half the validation set; the counts are summed.
  nlohmann::json alone_result = nlohmann::json::parse(*ReadFile(Path("one/result.json")));
  EXPECT_EQ(result["final_validation"]["examples"], 50);
  EXPECT_NEAR(result["final_validation"]["accuracy"].get<double>(),
              alone_result["final_validation"]["accuracy"].get<double>(), 0.021);
  EXPECT_NEAR(result["final_validation"]["loss"].get<double>(),
              alone_result["final_validation"]["loss"].get<double>(), 1e-3);
}

// retort launch: a pool of two teacher servers and two distilling ranks,
// all on this machine; the ranks find the pool through --teachers.
TEST_F(DataParallelTest, LaunchStartsATeacherPoolAndTwoRanks) {
  clitest::Result teacher = clitest::RunBinary(
      RETORT_BINARY,
      "train --arch=mlp --hidden=64 --epochs=1 --batch_size=50 --log_every_steps=0 --data_dir=" +
          Path("data") + " --validation_size=50 --threads=1 --out_dir=" + Path("teacher"),
      dir_);
  ASSERT_EQ(teacher.exit_code, 0) << teacher.err;
  clitest::Result launched = clitest::RunBinary(
      RETORT_BINARY,
      "launch --nproc=2 --launch_teachers=2 --teacher=" + Path("teacher/best.pt") +
          " --launch_dir=" + Path("launch") +
          " -- distill --arch=mlp --hidden=16 --epochs=2 --batch_size=50 --log_every_steps=1 "
          // Feature matching too: the adapters' gradients are all-reduced
          // with the student's (checkpoints check the ranks agree on both).
          "--feature_weight=1 --adapter=mlp --data_dir=" +
          Path("data") + " --validation_size=50 --threads=1 --out_dir=" + Path("student"),
      dir_);
  ASSERT_EQ(launched.exit_code, 0) << launched.err;
  EXPECT_THAT(launched.err, HasSubstr("[launch] teacher 1 serving"));
  EXPECT_THAT(launched.err, HasSubstr("2 ranks (c10d gloo)"));
  EXPECT_THAT(launched.err, HasSubstr("[launch] all 2 ranks finished"));
  nlohmann::json result = nlohmann::json::parse(*ReadFile(Path("student/result.json")));
  EXPECT_EQ(result["steps"], 20);
  EXPECT_TRUE(fs::exists(Path("launch/rank-1.log")));
  EXPECT_TRUE(fs::exists(Path("student/checkpoints/ckpt-000000000020/training-rank1.pt")));

  clitest::Result no_command = clitest::RunBinary(RETORT_BINARY, "launch --nproc=2", dir_);
  EXPECT_EQ(no_command.exit_code, 1);
  EXPECT_THAT(no_command.err, HasSubstr("needs the ranks' command after `--`"));
  clitest::Result twice = clitest::RunBinary(
      RETORT_BINARY, "launch --launch_teachers=1 --teacher=x -- distill --teachers=a:1", dir_);
  EXPECT_THAT(twice.err, HasSubstr("drop --teachers=a:1"));
}

// retort bench ddp end to end on a tiny model (the figures themselves are
// for docs/performance.md, not for tests).
TEST_F(DataParallelTest, BenchDdpWritesItsReport) {
  clitest::Result bench = clitest::RunBinary(
      RETORT_BINARY,
      "bench ddp --arch=mlp --hidden=16 --batch_size=20 --bench_steps=10 --validation_size=50 "
      "--data_dir=" +
          Path("data") + " --work_dir=" + Path("bench") + " --json_out=" + Path("ddp.json"),
      dir_);
  ASSERT_EQ(bench.exit_code, 0) << bench.err;
  nlohmann::json report = nlohmann::json::parse(*ReadFile(Path("ddp.json")));
  ASSERT_EQ(report["runs"].size(), 1u);
  EXPECT_GT(report["runs"][0]["two_ranks_samples_per_second"].get<double>(), 0);
  EXPECT_GE(report["median_communication_share"].get<double>(), 0);
  EXPECT_LE(report["median_communication_share"].get<double>(), 1);
}

// Ranks started directly, the way Slurm's srun or a Kubernetes Indexed Job
// starts them: no launcher agent that would tear the others down, so each
// rank must notice a dead or frozen peer on its own.
class RankFailureTest : public DataParallelTest {
 protected:
  std::string Args(const std::string& out) const {
    // Dropout: every rank's own generator must come back on resume.
    return "train --arch=mlp --hidden=256,256 --dropout=0.1 --epochs=3 --batch_size=20 "
           "--log_every_steps=1 --checkpoint_every_steps=10 --dist_timeout=8 --data_dir=" +
           Path("data") + " --validation_size=50 --threads=1 --out_dir=" + Path(out);
  }
  std::vector<std::unique_ptr<Subprocess>> StartRanks(const std::string& out,
                                                      const std::string& extra = "") {
    return clitest::StartRanks(RETORT_BINARY, Args(out) + " " + extra, dir_, out);
  }
  int64_t LoggedStep(const std::string& out) const {
    return clitest::LoggedStep(Path(out + "/metrics.jsonl"));
  }
  void WaitForStep(const std::string& out, int64_t step, Subprocess& rank0) {
    clitest::WaitForStep(Path(out + "/metrics.jsonl"), step, rank0, Path(out + ".rank0.err"));
  }
  std::string ResultSha(const std::string& out) const {
    absl::StatusOr<std::string> text = ReadFile(Path(out + "/result.json"));
    if (!text.ok()) return "(no result.json)";
    return nlohmann::json::parse(*text)["parameters_sha256"].get<std::string>();
  }
  void ExpectBothSucceed(std::vector<std::unique_ptr<Subprocess>>& ranks, const std::string& out) {
    ASSERT_EQ(ranks.size(), 2u);
    for (int rank = 0; rank < 2; ++rank) {
      absl::StatusOr<int> exit = ranks[rank]->Wait(absl::Seconds(300));
      ASSERT_TRUE(exit.ok()) << exit.status();
      EXPECT_EQ(*exit, 0)
          << ReadFile(Path(out + ".rank" + std::to_string(rank) + ".err")).value_or("");
    }
  }
};

TEST_F(RankFailureTest, AKilledRankFailsTheOtherAndARestartResumesBitForBit) {
  std::vector<std::unique_ptr<Subprocess>> reference = StartRanks("reference");
  ExpectBothSucceed(reference, "reference");

  std::vector<std::unique_ptr<Subprocess>> ranks = StartRanks("run");
  ASSERT_EQ(ranks.size(), 2u);
  WaitForStep("run", 25, *ranks[0]);
  ASSERT_TRUE(ranks[1]->Signal(SIGKILL).ok());
  // The survivor's next collective fails (the peer's connections close); the
  // bound is far above --dist_timeout so only a hang fails it.
  absl::StatusOr<int> exit = ranks[0]->Wait(absl::Seconds(120));
  ASSERT_TRUE(exit.ok()) << "rank 0 hangs after its peer died";
  EXPECT_EQ(*exit, 1);
  const std::string err = ReadFile(Path("run.rank0.err")).value_or("");
  EXPECT_THAT(err, HasSubstr("rank 0 of 2: "));
  EXPECT_THAT(err, HasSubstr("restart them all with --resume=auto"));
  ranks.clear();

  std::vector<std::unique_ptr<Subprocess>> resumed = StartRanks("run", "--resume=auto");
  ExpectBothSucceed(resumed, "run");
  EXPECT_THAT(ReadFile(Path("run.rank0.err")).value_or(""), HasSubstr("resuming from"));
  EXPECT_EQ(ResultSha("run"), ResultSha("reference"));
}

TEST_F(RankFailureTest, AFrozenRankFailsTheOtherWithinTheTimeout) {
  std::vector<std::unique_ptr<Subprocess>> ranks = StartRanks("frozen");
  ASSERT_EQ(ranks.size(), 2u);
  WaitForStep("frozen", 15, *ranks[0]);
  ASSERT_TRUE(ranks[1]->Signal(SIGSTOP).ok());
  absl::StatusOr<int> exit = ranks[0]->Wait(absl::Seconds(120));  // --dist_timeout=8
  ASSERT_TRUE(exit.ok()) << "rank 0 hangs behind a frozen peer";
  EXPECT_EQ(*exit, 1);
  EXPECT_THAT(ReadFile(Path("frozen.rank0.err")).value_or(""), HasSubstr("rank 0 of 2: "));
  ranks[1]->Signal(SIGKILL).IgnoreError();
}

}  // namespace
}  // namespace retort
