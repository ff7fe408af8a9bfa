#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "models/safetensors_file.h"
#include "models/safetensors_format.h"

namespace retort::models {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

// The tensors tests/models/safetensors_reference.py writes and checks.
NamedTensors Reference() {
  NamedTensors n;
  n.tensors = {
      {"bytes", torch::tensor({0, 255, 7}, torch::kUInt8)},
      {"double", torch::full({1, 1}, 3.25, torch::kFloat64)},
      {"embed.weight", torch::arange(12, torch::kFloat32).reshape({3, 4}) / 8},
      {"empty", torch::zeros({0, 3}, torch::kFloat32)},
      {"half", torch::tensor({0.5, 65504.0, -1.0}).to(torch::kFloat16)},
      {"i32", torch::tensor({-3, 5, 9}, torch::kInt32)},
      {"ids", torch::tensor({int64_t{-7}, int64_t{1} << 40}, torch::kInt64)},
      {"mask", torch::tensor({true, false, true}, torch::kBool)},
      {"norm.weight", torch::tensor({1.5, -2.25}).to(torch::kBFloat16)},
      {"scalar", torch::tensor(2.0f)},
  };
  n.metadata = {{"format", "pt"}, {"source", "retort"}};
  return n;
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("retort_safetensors_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) { return (dir_ / name).string(); }

  // A file with this header JSON and `data_bytes` zero bytes of data.
  std::string Hostile(const std::string& header, size_t data_bytes) {
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    return bytes + header + std::string(data_bytes, '\0');
  }
  absl::Status ParseError(const std::string& bytes) {
    return ParseSafetensorsHeader(bytes, bytes.size()).status();
  }

  fs::path dir_;
};

void ExpectSame(const NamedTensors& a, const NamedTensors& b) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    absl::StatusOr<torch::Tensor> other = b.Get(name);
    ASSERT_TRUE(other.ok()) << name;
    EXPECT_EQ(t.scalar_type(), other->scalar_type()) << name;
    EXPECT_EQ(t.sizes(), other->sizes()) << name;
    EXPECT_TRUE(torch::equal(t, *other)) << name;
  }
}

TEST_F(SafetensorsTest, RoundTripsEveryDtypeAndTheMetadata) {
  NamedTensors written = Reference();
  ASSERT_TRUE(WriteSafetensors(Path("a.safetensors"), written).ok());
  absl::StatusOr<NamedTensors> read = ReadSafetensors(Path("a.safetensors"));
  ASSERT_TRUE(read.ok()) << read.status();
  ExpectSame(written, *read);
  EXPECT_EQ(read->metadata, written.metadata);
  // Non-contiguous input is written in logical order.
  NamedTensors t;
  t.tensors = {{"t", torch::arange(6, torch::kFloat32).reshape({2, 3}).t()}};
  ASSERT_TRUE(WriteSafetensors(Path("t.safetensors"), t).ok());
  ExpectSame(t, *ReadSafetensors(Path("t.safetensors")));
}

// Layout against an independent implementation of the format (Python's
// struct/json and Debian's python3-torch), in both directions.
TEST_F(SafetensorsTest, MatchesAnIndependentReferenceBothWays) {
  if (std::system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
    GTEST_SKIP() << "Debian's python3-torch is not installed";
  }
  const std::string script =
      std::string(RETORT_SOURCE_DIR) + "/tests/models/safetensors_reference.py";
  ASSERT_EQ(
      std::system(("/usr/bin/python3 " + script + " write " + Path("ref.safetensors")).c_str()), 0);
  absl::StatusOr<NamedTensors> read = ReadSafetensors(Path("ref.safetensors"));
  ASSERT_TRUE(read.ok()) << read.status();
  ExpectSame(Reference(), *read);
  EXPECT_EQ(read->metadata.at("source"), "reference");

  ASSERT_TRUE(WriteSafetensors(Path("ours.safetensors"), Reference()).ok());
  EXPECT_EQ(
      std::system(("/usr/bin/python3 " + script + " check " + Path("ours.safetensors")).c_str()),
      0);
}

TEST_F(SafetensorsTest, RejectsHostileFilesWithTheReason) {
  ASSERT_TRUE(WriteSafetensors(Path("good.safetensors"), Reference()).ok());
  const std::string good = *ReadFile(Path("good.safetensors"));
  EXPECT_TRUE(ParseSafetensorsHeader(good, good.size()).ok());

  // Truncated: one byte of data missing, the header cut, the length cut.
  EXPECT_THAT(ParseError(good.substr(0, good.size() - 1)).message(), HasSubstr("data_offsets"));
  EXPECT_THAT(ParseError(good.substr(0, 20)).message(), HasSubstr("truncated"));
  EXPECT_THAT(ParseError(good.substr(0, 5)).message(), HasSubstr("fewer than the 8-byte"));
  // A length prefix beyond any sane header.
  std::string huge = good;
  huge[7] = '\x7f';
  EXPECT_THAT(ParseError(huge).message(), HasSubstr("exceeds the limit"));
  // Trailing bytes after the last tensor.
  EXPECT_THAT(ParseError(good + "xx").message(), HasSubstr("trailing"));

  const std::string f32 = R"("dtype":"F32","shape":[2])";
  // Offsets that lie about the size of the tensor.
  EXPECT_THAT(ParseError(Hostile(R"({"a":{)" + f32 + R"(,"data_offsets":[0,12]}})", 12)).message(),
              HasSubstr("need 8 bytes but data_offsets span 12"));
  // Offsets beyond the data.
  EXPECT_THAT(ParseError(Hostile(R"({"a":{)" + f32 + R"(,"data_offsets":[8,16]}})", 8)).message(),
              HasSubstr("fall outside"));
  // Overlapping tensors, and a hole between tensors.
  EXPECT_THAT(ParseError(Hostile(R"({"a":{)" + f32 + R"(,"data_offsets":[0,8]},"b":{)" + f32 +
                                     R"(,"data_offsets":[4,12]}})",
                                 12))
                  .message(),
              HasSubstr("previous tensor ends"));
  EXPECT_THAT(ParseError(Hostile(R"({"a":{)" + f32 + R"(,"data_offsets":[0,8]},"b":{)" + f32 +
                                     R"(,"data_offsets":[12,20]}})",
                                 20))
                  .message(),
              HasSubstr("hole"));
  // Unknown dtype, bad shape, not JSON, missing fields.
  const absl::Status dtype =
      ParseError(Hostile(R"({"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", 1));
  EXPECT_EQ(dtype.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(dtype.message(), HasSubstr("unknown safetensors dtype 'F8_E4M3'"));
  EXPECT_THAT(ParseError(Hostile(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", 0))
                  .message(),
              HasSubstr("non-negative integer"));
  EXPECT_THAT(
      ParseError(
          Hostile(
              R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0]}})",
              0))
          .message(),
      HasSubstr("overflows"));
  EXPECT_THAT(ParseError(Hostile("[1,2]", 0)).message(), HasSubstr("not a JSON object"));
  EXPECT_THAT(ParseError(Hostile("{\"a\":", 0)).message(), HasSubstr("not a JSON object"));
  EXPECT_THAT(ParseError(Hostile(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4)).message(),
              HasSubstr("no dtype"));
  EXPECT_THAT(ParseError(Hostile(R"({"__metadata__":{"k":1}})", 0)).message(),
              HasSubstr("not a string"));

  // Files: the path is in the error; BOOL bytes must be 0 or 1.
  ASSERT_TRUE(WriteFileAtomically(Path("lie.safetensors"),
                                  Hostile(R"({"a":{)" + f32 + R"(,"data_offsets":[0,12]}})", 12))
                  .ok());
  absl::StatusOr<NamedTensors> lie = ReadSafetensors(Path("lie.safetensors"));
  EXPECT_EQ(lie.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(lie.status().message(), HasSubstr("lie.safetensors: not a valid safetensors file"));
  std::string bools =
      Hostile(R"({"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", 0) + "\x01\x05";
  ASSERT_TRUE(WriteFileAtomically(Path("bool.safetensors"), bools).ok());
  EXPECT_THAT(ReadSafetensors(Path("bool.safetensors")).status().message(),
              HasSubstr("other than 0 and 1"));

  NamedTensors complex;
  complex.tensors = {{"c", torch::zeros({2}, torch::kComplexFloat)}};
  EXPECT_THAT(WriteSafetensors(Path("c.safetensors"), complex).message(), HasSubstr("no dtype"));
  NamedTensors twice;
  twice.tensors = {{"x", torch::zeros({1})}, {"x", torch::zeros({1})}};
  EXPECT_THAT(WriteSafetensors(Path("x.safetensors"), twice).message(), HasSubstr("repeated"));
}

}  // namespace
}  // namespace retort::models
