#include "data/token_shard.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <numeric>

#include "common/file_util.h"

namespace retort::data {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class TokenShardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("retort_token_shard_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) { return (dir_ / name).string(); }

  std::string Write(const std::string& name, uint32_t vocab, const std::vector<uint32_t>& tokens) {
    auto writer = TokenShardWriter::Create(Path(name), vocab);
    EXPECT_TRUE(writer.ok()) << writer.status();
    // In two pieces: appends continue the same stream.
    const size_t half = tokens.size() / 2;
    EXPECT_TRUE((*writer)->Append(absl::MakeConstSpan(tokens).subspan(0, half)).ok());
    EXPECT_TRUE((*writer)->Append(absl::MakeConstSpan(tokens).subspan(half)).ok());
    EXPECT_TRUE((*writer)->Finish().ok());
    return Path(name);
  }
  absl::Status OpenError(const std::string& bytes) {
    EXPECT_TRUE(WriteFileAtomically(Path("bad.tokens"), bytes).ok());
    return TokenShard::Open(Path("bad.tokens")).status();
  }

  fs::path dir_;
};

TEST_F(TokenShardTest, RoundTripsNarrowAndWideTokens) {
  for (uint32_t vocab : {32000u, 70000u}) {
    std::vector<uint32_t> tokens(1001);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(i * 7919) % vocab;
    tokens[5] = vocab - 1;
    const std::string path = Write("t" + std::to_string(vocab), vocab, tokens);
    absl::StatusOr<std::unique_ptr<TokenShard>> shard = TokenShard::Open(path);
    ASSERT_TRUE(shard.ok()) << shard.status();
    EXPECT_EQ((*shard)->size(), tokens.size());
    EXPECT_EQ((*shard)->vocab_size(), vocab);
    EXPECT_EQ((*shard)->token_width(), vocab <= 65536 ? 2u : 4u);
    EXPECT_EQ(*FileSize(path), static_cast<int64_t>(32 + tokens.size() * (*shard)->token_width()));
    absl::StatusOr<std::vector<int64_t>> all = (*shard)->Read(0, tokens.size());
    ASSERT_TRUE(all.ok());
    EXPECT_EQ(*all, std::vector<int64_t>(tokens.begin(), tokens.end()));
    EXPECT_EQ((*shard)->Read(1000, 2).status().code(), absl::StatusCode::kOutOfRange);
    EXPECT_FALSE(fs::exists(path + ".tmp." + std::to_string(::getpid())));
  }
}

TEST_F(TokenShardTest, RejectsDamagedFilesWithTheReason) {
  const std::string good = *ReadFile(Write("good.tokens", 100, {1, 2, 3, 4, 99}));
  ASSERT_TRUE(OpenError(good).ok());
  EXPECT_THAT(OpenError(good.substr(0, good.size() - 1)).message(), HasSubstr("truncated"));
  EXPECT_THAT(OpenError(good.substr(0, 20)).message(),
              HasSubstr("shorter than the 32-byte header"));
  std::string magic = good;
  magic[0] = 'X';
  EXPECT_THAT(OpenError(magic).message(), HasSubstr("wrong magic"));
  std::string version = good;
  version[8] = 9;
  absl::Status v = OpenError(version);
  EXPECT_EQ(v.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(v.message(), HasSubstr("version 9 is not supported"));
  std::string width = good;
  width[12] = 3;
  EXPECT_THAT(OpenError(width).message(), HasSubstr("token width 3"));
  std::string flipped = good;
  flipped[33] ^= 1;
  EXPECT_THAT(OpenError(flipped).message(), HasSubstr("checksum mismatch"));
  std::string vocab = good;  // vocabulary 50: token 99 falls outside
  vocab[24] = 50;
  const absl::Status outside = OpenError(vocab);
  EXPECT_EQ(outside.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(outside.message(),
              HasSubstr("token 99 at position 4 is outside the vocabulary of 50"));
  EXPECT_THAT(outside.message(), HasSubstr("bad.tokens: not a valid token shard"));
  EXPECT_EQ(TokenShard::Open(Path("missing")).status().code(), absl::StatusCode::kNotFound);

  auto writer = TokenShardWriter::Create(Path("w"), 10);
  ASSERT_TRUE(writer.ok());
  const std::vector<uint32_t> bad = {1, 10};
  EXPECT_THAT((*writer)->Append(bad).message(), HasSubstr("token 10 at position 1 is outside"));
  writer->reset();  // unfinished: nothing is left behind
  EXPECT_FALSE(fs::exists(Path("w")));
}

}  // namespace
}  // namespace retort::data
