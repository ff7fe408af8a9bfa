// Synthetic data for trainer tests: 10 Gaussian blobs in a 1x4x4 "image"
// space (classifiers), and a counting token stream (language models).
#ifndef RETORT_TESTS_TRAINER_SYNTHETIC_DATA_H_
#define RETORT_TESTS_TRAINER_SYNTHETIC_DATA_H_

#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/token_sequences.h"
#include "data/token_shard.h"
#include "gtest/gtest.h"

namespace retort::trainer::testing {

inline std::shared_ptr<data::TensorDataset> Blobs(int64_t n, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(1234);  // same centres for all
  torch::Tensor centres = torch::randn({10, 1, 4, 4}, gen) * 3.0;
  at::Generator noise = at::detail::createCPUGenerator(seed);
  torch::Tensor labels = torch::randint(0, 10, {n}, noise, torch::kLong);
  torch::Tensor inputs = centres.index_select(0, labels) + 0.5 * torch::randn({n, 1, 4, 4}, noise);
  return std::make_shared<data::TensorDataset>(inputs, labels, 10);
}

// A learnable token stream written to `path` as a token shard and opened as
// sequences of 16: counting runs (t, t+1, t+2, ...) of random length from
// random starts, so the next token is mostly the current one plus 1.
inline std::shared_ptr<data::TokenSequenceDataset> CountingTokens(const std::string& path, int n,
                                                                  uint32_t seed, uint32_t vocab) {
  auto writer = data::TokenShardWriter::Create(path, vocab);
  EXPECT_TRUE(writer.ok());
  uint32_t x = seed, t = 0;
  std::vector<uint32_t> tokens;
  for (int i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    t = (x >> 24) % 8 == 0 ? (x >> 16) % vocab : (t + 1) % vocab;
    tokens.push_back(t);
  }
  EXPECT_TRUE((*writer)->Append(tokens).ok());
  EXPECT_TRUE((*writer)->Finish().ok());
  auto d = data::TokenSequenceDataset::Open(path, 16);
  EXPECT_TRUE(d.ok()) << d.status();
  return *d;
}

}  // namespace retort::trainer::testing

#endif  // RETORT_TESTS_TRAINER_SYNTHETIC_DATA_H_
