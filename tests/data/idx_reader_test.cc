#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "data/idx_reader.h"
#include "tests/data/test_files.h"

namespace retort::data {
namespace {

using ::testing::HasSubstr;
using testing::IdxBytes;

TEST(ParseIdxTest, ReadsDimsAndValues) {
  absl::StatusOr<IdxArray> array = ParseIdx("f", IdxBytes({2, 3}, {1, 2, 3, 4, 5, 6}));
  ASSERT_TRUE(array.ok()) << array.status();
  EXPECT_EQ(array->dims, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(array->values, (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
}

struct BadCase {
  std::string name;
  std::string bytes;
  std::string message;
};

class ParseIdxBadInputTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(ParseIdxBadInputTest, RejectsWithAMessageNamingTheFile) {
  absl::StatusOr<IdxArray> array = ParseIdx("images.idx", GetParam().bytes);
  ASSERT_FALSE(array.ok());
  EXPECT_THAT(array.status().message(), HasSubstr("images.idx"));
  EXPECT_THAT(array.status().message(), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ParseIdxBadInputTest,
    ::testing::Values(BadCase{"Empty", "", "header truncated"},
                      BadCase{"BadMagic", std::string("\x01\x00\x08\x01\x00\x00\x00\x01\x05", 9),
                              "magic"},
                      BadCase{"FloatType", std::string("\x00\x00\x0d\x01\x00\x00\x00\x01\x05", 9),
                              "not supported"},
                      BadCase{"NoDims", std::string("\x00\x00\x08\x00", 4), "0 dimensions"},
                      BadCase{"TruncatedDims", std::string("\x00\x00\x08\x02\x00\x00\x00\x01", 8),
                              "header truncated"},
                      BadCase{"TruncatedData", IdxBytes({2, 3}, {1, 2, 3}), "truncated"},
                      BadCase{"TrailingBytes", IdxBytes({2}, {1, 2, 3}), "extra bytes"},
                      BadCase{"ZeroDim", IdxBytes({0, 3}, {}), "zero"},
                      BadCase{"HugeHeader", IdxBytes({0xffffffff, 0xffffffff}, {}), "corrupt"}),
    [](const auto& info) { return info.param.name; });

TEST(ReadIdxFileTest, ReadsGzipAndPlainFiles) {
  testing::ScratchDir dir;
  std::string bytes = IdxBytes({4}, {9, 8, 7, 6});
  testing::WriteGzip(dir.File("a.gz"), bytes);
  testing::WritePlain(dir.File("a.idx"), bytes);
  EXPECT_EQ(ReadIdxFile(dir.File("a.gz"))->values, (std::vector<uint8_t>{9, 8, 7, 6}));
  EXPECT_EQ(ReadIdxFile(dir.File("a.idx"))->values, (std::vector<uint8_t>{9, 8, 7, 6}));
}

TEST(ReadIdxFileTest, MissingFileSaysHowToGetIt) {
  absl::StatusOr<IdxArray> array = ReadIdxFile("/nonexistent/train.gz");
  EXPECT_EQ(array.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(array.status().message(), HasSubstr("/nonexistent/train.gz"));
  EXPECT_THAT(array.status().message(), HasSubstr("dataset-fashion-mnist"));
}

TEST(ReadIdxFileTest, TruncatedGzipIsDataLoss) {
  testing::ScratchDir dir;
  std::vector<uint8_t> values(5000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<uint8_t>(i * 7919 % 251);
  testing::WriteGzip(dir.File("full.gz"), IdxBytes({5000}, values));
  std::string compressed;
  {
    std::ifstream in(dir.File("full.gz"), std::ios::binary);
    compressed.assign(std::istreambuf_iterator<char>(in), {});
  }
  testing::WritePlain(dir.File("cut.gz"), compressed.substr(0, compressed.size() / 2));
  absl::StatusOr<IdxArray> array = ReadIdxFile(dir.File("cut.gz"));
  EXPECT_EQ(array.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(array.status().message(), HasSubstr("cut.gz"));
  testing::WritePlain(dir.File("junk.gz"), "this is not gzip at all");
  EXPECT_EQ(ReadIdxFile(dir.File("junk.gz")).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace retort::data
