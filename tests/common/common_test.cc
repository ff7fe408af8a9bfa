#include <c10/util/Exception.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "common/clock.h"
#include "common/file_util.h"
#include "common/metrics_writer.h"
#include "common/progress.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/torch_status.h"

namespace retort {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  RETORT_ASSIGN_OR_RETURN(int half, Half(x));
  RETORT_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

absl::Status CheckEven(int x) {
  RETORT_RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST(StatusMacrosTest, PropagateErrorsAndValues) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().message(), "odd");
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_FALSE(CheckEven(3).ok());
}

TEST(TorchCallTest, ConvertsTorchErrorsWithoutBacktrace) {
  absl::Status status = TorchCall("multiplying", [] { TORCH_CHECK(false, "shapes differ"); });
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("multiplying: shapes differ"));
  EXPECT_THAT(status.message(), Not(HasSubstr("frame #")));
  EXPECT_THAT(status.message(), Not(HasSubstr("\n")));
}

TEST(TorchCallTest, PassesValuesAndStatuses) {
  absl::StatusOr<int> value = TorchCall("x", [] { return 7; });
  EXPECT_EQ(*value, 7);
  absl::StatusOr<int> inner =
      TorchCall("x", []() -> absl::StatusOr<int> { return absl::NotFoundError("gone"); });
  EXPECT_EQ(inner.status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<int> thrown = TorchCall("x", []() -> int { throw std::runtime_error("boom"); });
  EXPECT_THAT(thrown.status().message(), HasSubstr("x: boom"));
}

class FileUtilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("retort_common_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(FileUtilTest, AtomicWriteReplacesAndLeavesNoTemporaries) {
  std::string path = (dir_ / "file.bin").string();
  ASSERT_TRUE(WriteFileAtomically(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomically(path, std::string("sec\0nd", 6)).ok());
  EXPECT_EQ(*ReadFile(path), std::string("sec\0nd", 6));
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1);
  EXPECT_EQ(*FileSize(path), 6);
}

TEST_F(FileUtilTest, ErrorsNameThePath) {
  std::string missing = (dir_ / "missing").string();
  absl::StatusOr<std::string> read = ReadFile(missing);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(read.status().message(), HasSubstr(missing));
  absl::Status write = WriteFileAtomically((dir_ / "no/such/dir/f").string(), "x");
  EXPECT_FALSE(write.ok());
  EXPECT_THAT(write.message(), HasSubstr("no/such/dir"));
}

TEST_F(FileUtilTest, MetricsWriterAppendsJsonLines) {
  std::string path = (dir_ / "m.jsonl").string();
  {
    auto writer = MetricsWriter::Create(path);
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Write({{"step", 1}}).ok());
  }
  {
    auto writer = MetricsWriter::Create(path);
    ASSERT_TRUE((*writer)->Write({{"step", 2}, {"loss", 0.5}}).ok());
  }
  EXPECT_EQ(*ReadFile(path), "{\"step\":1}\n{\"loss\":0.5,\"step\":2}\n");
}

TEST_F(FileUtilTest, DropRecordsAfterStepKeepsEarlierRecordsAndDropsATornLine) {
  std::string path = (dir_ / "resumed.jsonl").string();
  EXPECT_TRUE(DropRecordsAfterStep(path, 3).ok());  // no file yet: nothing to do
  ASSERT_TRUE(WriteFileAtomically(path,
                                  "{\"step\":1}\n{\"event\":\"epoch\",\"step\":3}\n"
                                  "{\"note\":\"no step\"}\n{\"step\":4}\n{\"step\":5}\n{\"st")
                  .ok());
  ASSERT_TRUE(DropRecordsAfterStep(path, 3).ok());
  EXPECT_EQ(*ReadFile(path),
            "{\"step\":1}\n{\"event\":\"epoch\",\"step\":3}\n{\"note\":\"no step\"}\n");
}

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 incremental;
  incremental.Update("a");
  incremental.Update("bc");
  EXPECT_EQ(incremental.HexDigest(), Sha256Hex("abc"));
}

TEST(ProgressLineTest, ReportsRateAndEta) {
  FakeClock clock;
  std::FILE* sink = std::tmpfile();
  ProgressLine line({.label = "[t]",
                     .total_units = 100,
                     .clock = &clock,
                     .out = sink,
                     .redraw = 0,
                     .min_interval = absl::Seconds(5)});
  clock.Advance(absl::Seconds(10));
  // 25 of 100 units in 10 s: 30 s left; 2500 samples in 10 s: 250 samples/s.
  EXPECT_EQ(line.Format(25, 2500, "loss 1.5"),
            "[t] 25/100 (25.0%) | loss 1.5 | 250 samples/s | ETA 30s");
  std::fclose(sink);
}

TEST(ProgressLineTest, PrintsAtMostOncePerInterval) {
  FakeClock clock;
  std::FILE* sink = std::tmpfile();
  ProgressLine line({.label = "p",
                     .total_units = 10,
                     .clock = &clock,
                     .out = sink,
                     .redraw = 0,
                     .min_interval = absl::Seconds(5)});
  for (int i = 1; i <= 10; ++i) {
    clock.Advance(absl::Seconds(2));
    line.Update(i, i, "");
  }
  std::fflush(sink);
  long size = std::ftell(sink);
  std::rewind(sink);
  std::string text(static_cast<size_t>(size), '\0');
  ASSERT_EQ(std::fread(text.data(), 1, text.size(), sink), text.size());
  std::fclose(sink);
  // 20 s with 5 s between lines: printed at 6, 12 and 18 s.
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3);
}

TEST(HumanDurationTest, Formats) {
  EXPECT_EQ(HumanDuration(absl::Seconds(12)), "12s");
  EXPECT_EQ(HumanDuration(absl::Seconds(245)), "4m05s");
  EXPECT_EQ(HumanDuration(absl::Seconds(3720)), "1h02m");
}

}  // namespace
}  // namespace retort
