// The GGUF container: a round trip of every value kind and tensor type, byte
// layout facts from the specification, and hostile files (every truncation,
// lies about counts, offsets, types and sizes) rejected with a reason.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "models/gguf_format.h"

namespace retort::models {
namespace {

using ::testing::HasSubstr;

std::vector<std::pair<std::string, GgufValue>> SomeMetadata() {
  return {{"general.architecture", GgufValue::String("llama")},
          {"llama.block_count", GgufValue::U32(2)},
          {"some.signed", GgufValue::I32(-7)},
          {"some.float", GgufValue::F32(0.25f)},
          {"some.flag", GgufValue::Bool(true)},
          {"tokenizer.ggml.tokens", GgufValue::Strings({"<unk>", "a", "", "\xe2\x96\x81the"})},
          {"tokenizer.ggml.scores", GgufValue::F32s({0.f, -1.5f, 2.f, 3.f})},
          {"tokenizer.ggml.token_type", GgufValue::I32s({2, 1, 1, 6})}};
}

std::vector<GgufTensorBytes> SomeTensors() {
  return {{"a.weight", {3}, GgmlType::kF32, std::string(12, '\1')},
          {"b.weight", {64, 2}, GgmlType::kQ8_0, std::string(2 * 2 * 34, '\2')},
          {"c.weight", {32, 1}, GgmlType::kQ4_0, std::string(18, '\3')},
          {"d.weight", {5, 2}, GgmlType::kF16, std::string(20, '\4')}};
}

std::string SomeFile() { return *SerializeGguf(SomeMetadata(), SomeTensors()); }

TEST(GgufFormatTest, RoundTripsMetadataAndTensors) {
  const std::string bytes = SomeFile();
  EXPECT_EQ(bytes.substr(0, 4), "GGUF");
  uint32_t version = 0;
  std::memcpy(&version, bytes.data() + 4, 4);
  EXPECT_EQ(version, 3u);
  auto file = ParseGguf(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ(file->metadata.size(), 8u);
  EXPECT_EQ(file->Find("general.architecture")->string, "llama");
  EXPECT_EQ(file->Find("llama.block_count")->integer, 2);
  EXPECT_EQ(file->Find("some.signed")->integer, -7);
  EXPECT_EQ(file->Find("some.float")->real, 0.25);
  EXPECT_EQ(file->Find("some.flag")->integer, 1);
  EXPECT_EQ(file->Find("tokenizer.ggml.tokens")->array[3].string, "\xe2\x96\x81the");
  EXPECT_EQ(file->Find("tokenizer.ggml.scores")->array[1].real, -1.5);
  EXPECT_EQ(file->Find("tokenizer.ggml.token_type")->array[3].integer, 6);
  EXPECT_EQ(file->Find("missing"), nullptr);
  ASSERT_EQ(file->tensors.size(), 4u);
  EXPECT_EQ(file->data_start % 32, 0u);
  const std::vector<GgufTensorBytes> want = SomeTensors();
  for (size_t i = 0; i < want.size(); ++i) {
    const GgufTensorInfo& t = file->tensors[i];
    EXPECT_EQ(t.name, want[i].name);
    EXPECT_EQ(t.dims, want[i].dims);
    EXPECT_EQ(t.type, want[i].type);
    EXPECT_EQ(t.offset % 32, 0u);
    EXPECT_EQ(t.bytes, want[i].data.size());
    EXPECT_EQ(bytes.substr(file->data_start + t.offset, t.bytes), want[i].data);
  }
}

TEST(GgufFormatTest, WritesAnotherAlignmentAsMetadata) {
  auto bytes = SerializeGguf(SomeMetadata(), SomeTensors(), 64);
  ASSERT_TRUE(bytes.ok());
  auto file = ParseGguf(*bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->alignment, 64u);
  for (const auto& t : file->tensors) EXPECT_EQ(t.offset % 64, 0u);
}

TEST(GgufFormatTest, SerializeRefusesInconsistentTensors) {
  EXPECT_THAT(SerializeGguf({}, {{"x", {4}, GgmlType::kF32, "abc"}}).status().message(),
              HasSubstr("need 16"));
  EXPECT_THAT(SerializeGguf({}, {{"x", {31}, GgmlType::kQ8_0, ""}}).status().message(),
              HasSubstr("not whole Q8_0 blocks"));
  EXPECT_THAT(SerializeGguf({}, {{"x", {1}, GgmlType::kF32, "abcd"},
                                 {"x", {1}, GgmlType::kF32, "abcd"}})
                  .status()
                  .message(),
              HasSubstr("twice"));
}

TEST(GgufFormatTest, EveryTruncationIsRejected) {
  const std::string bytes = SomeFile();
  for (size_t n = 0; n < bytes.size(); ++n) {
    // Cutting only the padding after the last tensor leaves a valid file.
    absl::StatusOr<GgufFile> file = ParseGguf(absl::string_view(bytes).substr(0, n));
    if (file.ok()) {
      const GgufTensorInfo& last = file->tensors.back();
      EXPECT_GE(n, file->data_start + last.offset + last.bytes) << n;
      continue;
    }
    EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss) << n;
  }
}

// SomeFile with bytes overwritten.
struct Patcher {
  std::string bytes = SomeFile();
  template <typename T>
  void Put(size_t at, T value) {
    std::memcpy(bytes.data() + at, &value, sizeof(T));
  }
};

TEST(GgufFormatTest, RejectsLiesWithAReason) {
  auto expect = [](const std::string& bytes, const std::string& reason) {
    auto file = ParseGguf(bytes);
    ASSERT_FALSE(file.ok()) << reason;
    EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(file.status().message(), HasSubstr(reason));
  };
  {
    Patcher p;
    p.bytes[0] = 'X';
    expect(p.bytes, "does not start with");
  }
  {
    Patcher p;
    p.Put<uint32_t>(4, 9);
    expect(p.bytes, "version 9");
  }
  {
    Patcher p;
    p.Put<uint64_t>(8, uint64_t{1} << 40);
    expect(p.bytes, "tensors and");
  }
  {
    Patcher p;  // the first key's length claims more bytes than the file has
    p.Put<uint64_t>(24, uint64_t{1} << 50);
    expect(p.bytes, "claims");
  }
  {
    Patcher p;  // the first value's type (after the 20-byte key) is unknown
    p.Put<uint32_t>(24 + 8 + 20, 99);
    expect(p.bytes, "unknown value type 99");
  }
  // Tensor infos: name, n_dims, dims, type, offset.
  const auto info = [](Patcher& p, const std::string& name) {
    return p.bytes.find(name) + name.size();  // at n_dims
  };
  {
    Patcher p;
    p.Put<uint32_t>(info(p, "a.weight"), 7);
    expect(p.bytes, "7 dimensions");
  }
  {
    Patcher p;  // a.weight: n_dims 1, dims[0], then the type
    p.Put<uint32_t>(info(p, "a.weight") + 4 + 8, 12);
    expect(p.bytes, "ggml type 12");
  }
  {
    Patcher p;  // c.weight's offset, misaligned
    const size_t at = info(p, "c.weight") + 4 + 16 + 4;
    uint64_t offset = 0;
    std::memcpy(&offset, p.bytes.data() + at, 8);
    p.Put<uint64_t>(at, offset + 1);
    expect(p.bytes, "not a multiple of the alignment");
  }
  {
    Patcher p;  // c.weight pointed at b.weight's data
    p.Put<uint64_t>(info(p, "c.weight") + 4 + 16 + 4, 32);
    expect(p.bytes, "overlap");
  }
  {
    Patcher p;  // d.weight's dims grow past the data
    p.Put<uint64_t>(info(p, "d.weight") + 4, 5000);
    expect(p.bytes, "runs past the end");
  }
  {
    Patcher p;  // b.weight's rows of 63 are not whole Q8_0 blocks
    p.Put<uint64_t>(info(p, "b.weight") + 4, 63);
    expect(p.bytes, "not whole Q8_0 blocks");
  }
  {
    Patcher p;  // dims whose product overflows
    p.Put<uint64_t>(info(p, "d.weight") + 4 + 8, uint64_t{1} << 62);
    expect(p.bytes, "too large");
  }
}

TEST(GgufFormatTest, RejectsNestedArraysAndRepeatedKeys) {
  GgufValue nested;
  nested.type = GgufValueType::kArray;
  nested.array_type = GgufValueType::kArray;
  nested.array.push_back(GgufValue::Strings({"x"}));
  auto bytes = SerializeGguf({{"n", nested}}, {});
  ASSERT_TRUE(bytes.ok());
  EXPECT_THAT(ParseGguf(*bytes).status().message(), HasSubstr("array of unknown type 9"));
  auto twice = SerializeGguf({{"k", GgufValue::U32(1)}, {"k", GgufValue::U32(2)}}, {});
  EXPECT_THAT(ParseGguf(*twice).status().message(), HasSubstr("repeats"));
}

}  // namespace
}  // namespace retort::models
