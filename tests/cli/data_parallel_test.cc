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

#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
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
}

}  // namespace
}  // namespace retort
