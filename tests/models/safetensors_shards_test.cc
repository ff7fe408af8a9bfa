// Sharded safetensors directories (model.safetensors.index.json) and
// memory-mapped reading: round trips, shard sizes, and an index that lies.
#include "models/safetensors_shards.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/file_util.h"

namespace retort::models {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class SafetensorsShardsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("retort_shards_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    torch::manual_seed(1);
    // 4 KiB, 2 KiB, 4 KiB, 1 KiB (float32), 2 KiB (bfloat16), 12 B.
    tensors_.metadata["format"] = "pt";
    tensors_.tensors = {{"a", torch::randn({32, 32})},
                        {"b", torch::randn({512})},
                        {"c", torch::randn({1024})},
                        {"d", torch::randn({16, 16})},
                        {"e", torch::randn({1024}).to(torch::kBFloat16)},
                        {"f", torch::tensor({1, 2, 3}, torch::kInt32)}};
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) { return (dir_ / name).string(); }

  static void ExpectSame(const NamedTensors& a, const NamedTensors& b) {
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (const auto& [name, t] : a.tensors) {
      absl::StatusOr<torch::Tensor> other = b.Get(name);
      ASSERT_TRUE(other.ok()) << name;
      EXPECT_EQ(other->scalar_type(), t.scalar_type()) << name;
      EXPECT_TRUE(torch::equal(*other, t)) << name;
    }
  }
  nlohmann::json Index(const std::string& dir) {
    std::ifstream f(dir + "/" + kSafetensorsIndexFileName);
    return nlohmann::json::parse(f);
  }
  void WriteIndex(const std::string& dir, const nlohmann::json& index) {
    std::ofstream(dir + "/" + kSafetensorsIndexFileName) << index.dump();
  }

  fs::path dir_;
  NamedTensors tensors_;
};

TEST_F(SafetensorsShardsTest, SmallWeightsStayOneFile) {
  ASSERT_TRUE(WriteSafetensorsWeights(Path("one"), tensors_, /*max_shard_bytes=*/1 << 20).ok());
  EXPECT_TRUE(PathExists(Path("one/model.safetensors")));
  EXPECT_FALSE(PathExists(Path("one/model.safetensors.index.json")));
  absl::StatusOr<NamedTensors> back = ReadSafetensorsWeights(Path("one"));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSame(tensors_, *back);
}

TEST_F(SafetensorsShardsTest, ShardsRoundTripWithinTheLimitAndReplaceAnEarlierLayout) {
  ASSERT_TRUE(WriteSafetensorsWeights(Path("w"), tensors_).ok());
  ASSERT_TRUE(PathExists(Path("w/model.safetensors")));
  // a | b | c | d e f (1 KiB + 2 KiB + 12 B): 4 shards of at most 4 KiB.
  ASSERT_TRUE(WriteSafetensorsWeights(Path("w"), tensors_, /*max_shard_bytes=*/4096).ok());
  EXPECT_FALSE(PathExists(Path("w/model.safetensors")));
  const nlohmann::json index = Index(Path("w"));
  EXPECT_EQ(index["metadata"]["total_size"], 4096 + 2048 + 4096 + 1024 + 2048 + 12);
  EXPECT_EQ(index["weight_map"]["a"], "model-00001-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["b"], "model-00002-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["c"], "model-00003-of-00004.safetensors");
  EXPECT_EQ(index["weight_map"]["f"], "model-00004-of-00004.safetensors");
  for (int i = 1; i <= 4; ++i) {
    const std::string shard = Path("w/model-0000" + std::to_string(i) + "-of-00004.safetensors");
    absl::StatusOr<int64_t> size = FileSize(shard);
    ASSERT_TRUE(size.ok()) << size.status();
    EXPECT_LE(*size, 4096 + 512) << shard;  // the limit counts tensor bytes, as transformers
    absl::StatusOr<NamedTensors> part = ReadSafetensors(shard);
    ASSERT_TRUE(part.ok());
    EXPECT_EQ(part->metadata.at("format"), "pt");
  }
  absl::StatusOr<NamedTensors> back = ReadSafetensorsWeights(Path("w"));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSame(tensors_, *back);
  EXPECT_EQ(back->tensors[0].first, "a");
  EXPECT_EQ(back->metadata.at("format"), "pt");
  absl::StatusOr<int64_t> bytes = SafetensorsWeightsBytes(Path("w"));
  ASSERT_TRUE(bytes.ok());
  EXPECT_GT(*bytes, 4096 + 2048 + 4096 + 1024 + 2048 + 12);

  // A tensor larger than the limit gets a shard of its own.
  ASSERT_TRUE(WriteSafetensorsWeights(Path("w"), tensors_, /*max_shard_bytes=*/1000).ok());
  EXPECT_EQ(Index(Path("w"))["weight_map"]["f"], "model-00006-of-00006.safetensors");
  EXPECT_FALSE(PathExists(Path("w/model-00004-of-00004.safetensors")));
  // And back to one file: the shards and the index go.
  ASSERT_TRUE(WriteSafetensorsWeights(Path("w"), tensors_).ok());
  EXPECT_FALSE(PathExists(Path("w/model.safetensors.index.json")));
  EXPECT_FALSE(PathExists(Path("w/model-00001-of-00006.safetensors")));
  EXPECT_EQ(WriteSafetensorsWeights(Path("w"), tensors_, -1).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SafetensorsShardsTest, RefusesAnIndexThatLiesNamingTheTensorAndFile) {
  ASSERT_TRUE(WriteSafetensorsWeights(Path("w"), tensors_, /*max_shard_bytes=*/4096).ok());
  const nlohmann::json good = Index(Path("w"));

  // A tensor mapped to a shard that lacks it.
  nlohmann::json lying = good;
  lying["weight_map"]["a"] = "model-00002-of-00004.safetensors";
  WriteIndex(Path("w"), lying);
  absl::Status s = ReadSafetensorsWeights(Path("w")).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("tensor a"));
  EXPECT_THAT(s.message(), HasSubstr("model-0000"));

  // A tensor no shard holds.
  lying = good;
  lying["weight_map"]["ghost"] = "model-00001-of-00004.safetensors";
  WriteIndex(Path("w"), lying);
  s = ReadSafetensorsWeights(Path("w")).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("ghost"));

  // A tensor a shard holds that the index leaves out.
  lying = good;
  lying["weight_map"].erase("e");
  WriteIndex(Path("w"), lying);
  s = ReadSafetensorsWeights(Path("w")).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(s.message(), HasSubstr("tensor e"));
  EXPECT_THAT(s.message(), HasSubstr("model-00004-of-00004.safetensors"));

  // A path instead of a file name.
  lying = good;
  lying["weight_map"]["a"] = "../model-00001-of-00004.safetensors";
  WriteIndex(Path("w"), lying);
  s = ReadSafetensorsWeights(Path("w")).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;

  // Not an index at all.
  std::ofstream(Path("w/model.safetensors.index.json")) << "[1, 2]";
  EXPECT_EQ(ReadSafetensorsWeights(Path("w")).status().code(), absl::StatusCode::kDataLoss);

  // A shard missing.
  WriteIndex(Path("w"), good);
  ASSERT_TRUE(ReadSafetensorsWeights(Path("w")).ok());
  fs::remove(Path("w/model-00003-of-00004.safetensors"));
  s = ReadSafetensorsWeights(Path("w")).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("model-00003-of-00004.safetensors"));
  EXPECT_THAT(s.message(), HasSubstr("tensor c"));

  EXPECT_EQ(ReadSafetensorsWeights(Path("empty")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SafetensorsShardsTest, MappedTensorsKeepTheirDtypeOutliveTheirListAndNeverWriteTheFile) {
  ASSERT_TRUE(WriteSafetensors(Path("m.safetensors"), tensors_).ok());
  const std::string before = *ReadFile(Path("m.safetensors"));
  torch::Tensor e;
  {
    absl::StatusOr<NamedTensors> mapped = MapSafetensors(Path("m.safetensors"));
    ASSERT_TRUE(mapped.ok()) << mapped.status();
    ExpectSame(tensors_, *mapped);
    e = *mapped->Get("e");
  }
  EXPECT_EQ(e.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(e, tensors_.tensors[4].second));  // the mapping is still there
  e.fill_(7);                                                // copy-on-write
  EXPECT_EQ(*ReadFile(Path("m.safetensors")), before);
  std::ofstream(Path("bad.safetensors")) << "not safetensors";
  absl::Status s = MapSafetensors(Path("bad.safetensors")).status();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("bad.safetensors"));
}

}  // namespace
}  // namespace retort::models
