#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/file_util.h"
#include "models/checkpoint_file.h"

namespace retort::models {
namespace {

using ::testing::HasSubstr;

class CheckpointFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() / ("retort_ckpt_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    spec_.hidden = {32};
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) { return (dir_ / name).string(); }

  std::filesystem::path dir_;
  ModelSpec spec_;
};

TEST_F(CheckpointFileTest, RoundTripKeepsWeightsSpecAndMeta) {
  auto model = *CreateClassifier(spec_, 3);
  ASSERT_TRUE(WriteCheckpoint(Path("m.pt"), *model, {{"note", "hello"}}).ok());
  absl::StatusOr<LoadedCheckpoint> loaded = ReadCheckpoint(Path("m.pt"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->model->spec(), spec_);
  EXPECT_EQ(loaded->meta["note"], "hello");
  torch::Tensor x = torch::randn({2, 1, 28, 28});
  model->eval();
  loaded->model->eval();
  EXPECT_TRUE(torch::equal(model->forward(x), loaded->model->forward(x)));
  EXPECT_EQ(WeightsSha256(*model), WeightsSha256(*loaded->model));
}

TEST_F(CheckpointFileTest, WeightsHashChangesWithWeights) {
  auto a = *CreateClassifier(spec_, 3);
  auto b = *CreateClassifier(spec_, 4);
  EXPECT_NE(WeightsSha256(*a), WeightsSha256(*b));
  EXPECT_EQ(WeightsSha256(*a).size(), 64u);
}

TEST_F(CheckpointFileTest, OtherArchitectureIsRefusedNamingBoth) {
  auto model = *CreateClassifier(spec_, 3);
  ASSERT_TRUE(WriteCheckpoint(Path("m.pt"), *model, {}).ok());
  ModelSpec other = spec_;
  other.hidden = {64};
  auto target = *CreateClassifier(other, 3);
  absl::StatusOr<nlohmann::json> meta = ReadCheckpointInto(Path("m.pt"), *target);
  EXPECT_EQ(meta.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(meta.status().message(), HasSubstr("mlp 784-32-10"));
  EXPECT_THAT(meta.status().message(), HasSubstr("mlp 784-64-10"));
}

TEST_F(CheckpointFileTest, TruncatedCorruptAndForeignFilesAreDataLoss) {
  auto model = *CreateClassifier(spec_, 3);
  ASSERT_TRUE(WriteCheckpoint(Path("m.pt"), *model, {}).ok());
  std::string bytes = *ReadFile(Path("m.pt"));
  ASSERT_TRUE(WriteFileAtomically(Path("cut.pt"), bytes.substr(0, bytes.size() / 2)).ok());
  ASSERT_TRUE(WriteFileAtomically(Path("junk.pt"), "definitely not a zip archive").ok());
  std::string flipped = bytes;
  for (size_t i = bytes.size() / 3; i < bytes.size() / 3 + 64; ++i) flipped[i] ^= 0x5a;
  ASSERT_TRUE(WriteFileAtomically(Path("flip.pt"), flipped).ok());
  for (const char* name : {"cut.pt", "junk.pt", "flip.pt"}) {
    absl::StatusOr<LoadedCheckpoint> loaded = ReadCheckpoint(Path(name));
    ASSERT_FALSE(loaded.ok()) << name;
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss) << loaded.status();
    EXPECT_THAT(loaded.status().message(), HasSubstr(name));
  }
  EXPECT_EQ(ReadCheckpoint(Path("absent.pt")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CheckpointFileTest, ExtraEntriesRoundTrip) {
  auto model = *CreateClassifier(spec_, 3);
  ASSERT_TRUE(WriteCheckpoint(Path("m.pt"), *model, {}, [](torch::serialize::OutputArchive& a) {
                a.write("extra", torch::arange(5));
              }).ok());
  torch::Tensor extra;
  auto meta = ReadCheckpointInto(Path("m.pt"), *model, [&](torch::serialize::InputArchive& a) {
    a.read("extra", extra);
    return absl::OkStatus();
  });
  ASSERT_TRUE(meta.ok());
  EXPECT_TRUE(torch::equal(extra, torch::arange(5)));
}

}  // namespace
}  // namespace retort::models
