#include "checkpoint/checkpoint_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/file_util.h"

namespace retort::checkpoint {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

class CheckpointStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("retort_ckpt_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<CheckpointStore> Store(int keep_last = 3) {
    auto store = CheckpointStore::Create({dir_.string(), keep_last});
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // Writes a checkpoint of `step` with two files whose contents name it.
  void Write(CheckpointStore& store, int64_t step) {
    auto pending = store.Begin(step);
    ASSERT_TRUE(pending.ok()) << pending.status();
    std::ofstream((*pending)->Path("model.pt")) << "weights of step " << step;
    std::ofstream((*pending)->Path("optimizer.pt")) << "moments of step " << step << "...";
    ASSERT_TRUE((*pending)->Commit({{"step", step}, {"loss", 0.5}}).ok());
  }

  std::string CkptDir(int64_t step) const {
    char name[32];
    std::snprintf(name, sizeof(name), "ckpt-%012lld", static_cast<long long>(step));
    return (dir_ / name).string();
  }

  fs::path dir_;
};

TEST_F(CheckpointStoreTest, LatestIsTheNewestCommittedCheckpoint) {
  auto store = Store();
  std::vector<std::string> warnings;
  auto none = store->Latest(&warnings);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  Write(*store, 100);
  Write(*store, 1200);  // numeric order, not string order of unpadded names
  Write(*store, 300);
  auto latest = store->Latest(&warnings);
  ASSERT_TRUE(latest.ok()) << latest.status();
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->step, 1200);
  EXPECT_EQ((*latest)->metadata["loss"], 0.5);
  EXPECT_EQ(*ReadFile((*latest)->dir + "/model.pt"), "weights of step 1200");
  EXPECT_TRUE(warnings.empty());
}

TEST_F(CheckpointStoreTest, KeepsOnlyTheNewestKeepLast) {
  auto store = Store(/*keep_last=*/2);
  for (int64_t step : {10, 20, 30, 40}) Write(*store, step);
  auto steps = store->CompleteSteps();
  ASSERT_TRUE(steps.ok()) << steps.status();
  EXPECT_THAT(*steps, ElementsAre(30, 40));
  EXPECT_FALSE(fs::exists(CkptDir(10)));
}

TEST_F(CheckpointStoreTest, ACorruptNewestCheckpointFallsBackWithAWarning) {
  auto store = Store();
  Write(*store, 1);
  Write(*store, 2);
  // Same size, one byte flipped.
  std::string bytes = *ReadFile(CkptDir(2) + "/model.pt");
  bytes[0] ^= 1;
  ASSERT_TRUE(WriteFileAtomically(CkptDir(2) + "/model.pt", bytes).ok());
  std::vector<std::string> warnings;
  auto latest = store->Latest(&warnings);
  ASSERT_TRUE(latest.ok()) << latest.status();
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->step, 1);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("step 2"));
  EXPECT_THAT(warnings[0], HasSubstr("model.pt does not match its sha256"));
}

// Found by the chaos soak: every kept checkpoint corrupt, the run starts
// afresh; its new checkpoints must survive the prune (they used to be
// deleted at once, ranked below the corrupt ones of later steps), and so must
// an older complete one when the run resumes from it.
TEST_F(CheckpointStoreTest, CheckpointsOfAnAbandonedLaterRunDoNotCrowdOutNewOnes) {
  auto store = Store(/*keep_last=*/3);
  for (int64_t step : {10, 20, 30, 40}) Write(*store, step);
  for (int64_t step : {30, 40}) {
    std::ofstream(CkptDir(step) + "/model.pt", std::ios::app) << "bit rot";
  }
  std::vector<std::string> warnings;
  auto latest = store->Latest(&warnings);
  ASSERT_TRUE(latest.ok()) << latest.status();
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->step, 20);  // resumed from here
  Write(*store, 25);
  auto complete = store->CompleteSteps();
  ASSERT_TRUE(complete.ok()) << complete.status();
  EXPECT_THAT(*complete, ElementsAre(20, 25));  // 20 used to be pruned here
  EXPECT_FALSE(fs::exists(CkptDir(30)));
  EXPECT_FALSE(fs::exists(CkptDir(40)));

  // All corrupt: a fresh start's first checkpoint is kept.
  for (int64_t step : {20, 25}) {
    std::ofstream(CkptDir(step) + "/optimizer.pt", std::ios::app) << "bit rot";
  }
  Write(*store, 3);
  complete = store->CompleteSteps();
  ASSERT_TRUE(complete.ok()) << complete.status();
  EXPECT_THAT(*complete, ElementsAre(3));
}

TEST_F(CheckpointStoreTest, TruncatedMissingOrManifestlessCheckpointsAreSkipped) {
  auto store = Store(/*keep_last=*/5);
  for (int64_t step : {1, 2, 3, 4}) Write(*store, step);
  fs::resize_file(CkptDir(4) + "/optimizer.pt", 3);
  fs::remove(CkptDir(3) + "/model.pt");
  fs::remove(CkptDir(2) + "/MANIFEST.json");
  std::vector<std::string> warnings;
  auto latest = store->Latest(&warnings);
  ASSERT_TRUE(latest.ok()) << latest.status();
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->step, 1);
  ASSERT_EQ(warnings.size(), 3u);
  EXPECT_THAT(warnings[0], HasSubstr("optimizer.pt has 3 bytes"));
  EXPECT_THAT(warnings[1], HasSubstr("model.pt is missing"));
  EXPECT_THAT(warnings[2], HasSubstr("no MANIFEST.json"));
  // A manifest that is not JSON.
  ASSERT_TRUE(WriteFileAtomically(CkptDir(1) + "/MANIFEST.json", "{not json").ok());
  auto verified = CheckpointStore::Verify(CkptDir(1));
  EXPECT_EQ(verified.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(verified.status().message(), HasSubstr("not a valid manifest"));
}

TEST_F(CheckpointStoreTest, AnInterruptedWriteLeavesThePreviousCheckpointAndIsCleanedUp) {
  auto store = Store();
  Write(*store, 5);
  {
    // Killed after writing data, before Commit.
    auto pending = store->Begin(6);
    ASSERT_TRUE(pending.ok());
    std::ofstream((*pending)->Path("model.pt")) << "half";
  }
  std::vector<std::string> warnings;
  auto latest = store->Latest(&warnings);
  ASSERT_TRUE(latest.ok());
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->step, 5);
  EXPECT_TRUE(warnings.empty());  // staging debris is not a checkpoint
  bool staging = false;
  for (const auto& e : fs::directory_iterator(dir_)) {
    staging = staging || e.path().filename().string().rfind(".staging-", 0) == 0;
  }
  EXPECT_TRUE(staging);
  Write(*store, 7);  // the next writer removes the debris
  for (const auto& e : fs::directory_iterator(dir_)) {
    EXPECT_NE(e.path().filename().string().rfind(".staging-", 0), 0u) << e.path();
  }
}

TEST_F(CheckpointStoreTest, RefusesBadOptionsAndDoubleCommit) {
  EXPECT_EQ(CheckpointStore::Create({dir_.string(), 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckpointStore::Create({"", 3}).status().code(), absl::StatusCode::kInvalidArgument);
  auto store = Store();
  EXPECT_EQ(store->Begin(-1).status().code(), absl::StatusCode::kInvalidArgument);
  auto pending = store->Begin(1);
  ASSERT_TRUE(pending.ok());
  ASSERT_TRUE((*pending)->Commit({}).ok());
  EXPECT_EQ((*pending)->Commit({}).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace retort::checkpoint
