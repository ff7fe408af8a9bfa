#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "common/file_util.h"
#include "data/fashion_mnist.h"
#include "tests/data/test_files.h"

namespace retort::data {
namespace {

using ::testing::HasSubstr;
using testing::IdxBytes;

TEST(LoadIdxPairTest, ChecksThePairAgrees) {
  testing::ScratchDir dir;
  testing::WriteGzip(dir.File("img.gz"), IdxBytes({3, 2, 2}, std::vector<uint8_t>(12, 255)));
  testing::WriteGzip(dir.File("lab.gz"), IdxBytes({3}, {0, 1, 2}));
  testing::WriteGzip(dir.File("lab2.gz"), IdxBytes({2}, {0, 1}));
  testing::WriteGzip(dir.File("lab_bad.gz"), IdxBytes({3}, {0, 1, 10}));
  testing::WriteGzip(dir.File("flat.gz"), IdxBytes({12}, std::vector<uint8_t>(12, 0)));

  auto ok = LoadIdxPair(dir.File("img.gz"), dir.File("lab.gz"), 10);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)->size(), 3);
  EXPECT_EQ((*ok)->example_shape(), (std::vector<int64_t>{1, 2, 2}));

  auto count = LoadIdxPair(dir.File("img.gz"), dir.File("lab2.gz"), 10);
  EXPECT_THAT(count.status().message(), HasSubstr("do not belong together"));
  auto label = LoadIdxPair(dir.File("img.gz"), dir.File("lab_bad.gz"), 10);
  EXPECT_THAT(label.status().message(), HasSubstr("label 10 at index 2"));
  auto dims = LoadIdxPair(dir.File("flat.gz"), dir.File("lab.gz"), 10);
  EXPECT_THAT(dims.status().message(), HasSubstr("expected 3 dimensions"));
}

TEST(FashionMnistTest, MissingDirectoryIsNotFound) {
  FashionMnistOptions options;
  options.dir = "/nonexistent/fashion";
  auto split = LoadFashionMnistTrain(options);
  EXPECT_EQ(split.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(split.status().message(), HasSubstr("/nonexistent/fashion/train-images"));
}

// The real dataset (installed by the test command from Debian's
// dataset-fashion-mnist).
TEST(FashionMnistTest, RealDataSplitsDisjointlyAndDeterministically) {
  if (!PathExists(std::string(kDefaultFashionMnistDir) + "/train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  }
  FashionMnistOptions options;
  auto split = LoadFashionMnistTrain(options);
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(split->train->size(), 55000);
  EXPECT_EQ(split->validation->size(), 5000);
  EXPECT_EQ(split->train->example_shape(), (std::vector<int64_t>{1, 28, 28}));
  // Standardised pixels: mean about 0, std about 1 over the training set.
  EXPECT_NEAR(split->train->inputs().mean().item<double>(), 0.0, 0.02);
  EXPECT_NEAR(split->train->inputs().std().item<double>(), 1.0, 0.02);
  // Balanced classes in validation (500 each in expectation).
  torch::Tensor counts = torch::bincount(split->validation->labels());
  EXPECT_EQ(counts.size(0), 10);
  EXPECT_GT(counts.min().item<int64_t>(), 400);
  // No validation image appears in the training set (compare by bytes).
  std::set<std::string> train_rows;
  torch::Tensor train = split->train->inputs();
  const size_t row = 28 * 28 * sizeof(float);
  for (int64_t i = 0; i < train.size(0); ++i) {
    train_rows.emplace(static_cast<const char*>(train[i].data_ptr()), row);
  }
  torch::Tensor val = split->validation->inputs();
  int64_t shared = 0;
  for (int64_t i = 0; i < val.size(0); ++i) {
    shared += train_rows.count(std::string(static_cast<const char*>(val[i].data_ptr()), row));
  }
  // Fashion-MNIST has a handful of exact duplicate images; a leak would be
  // thousands.
  EXPECT_LT(shared, 20);
  auto again = LoadFashionMnistTrain(options);
  EXPECT_TRUE(torch::equal(again->validation->labels(), split->validation->labels()));
  auto test = LoadFashionMnistTest(options);
  ASSERT_TRUE(test.ok());
  EXPECT_EQ((*test)->size(), 10000);
}

}  // namespace
}  // namespace retort::data
