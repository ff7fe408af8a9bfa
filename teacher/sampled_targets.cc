#include "teacher/sampled_targets.h"

#include <limits>

#include <ATen/CPUGeneratorImpl.h>

#include "absl/strings/numbers.h"
#include "common/sha256.h"

namespace retort::teacher {

TopKLogProbs SampledTargets::ToTopK() const {
  torch::NoGradGuard no_grad;
  TopKLogProbs out;
  out.indices = ids;
  torch::Tensor c = counts.to(torch::kFloat32);
  out.values = torch::where(c > 0, (c / static_cast<double>(samples)).log(),
                            torch::full_like(c, -std::numeric_limits<float>::infinity()));
  out.tail_log_mass =
      torch::full({ids.size(0)}, -std::numeric_limits<float>::infinity(), torch::kFloat32);
  return out;
}

uint64_t RowKey(const torch::Tensor& row) {
  torch::Tensor t = row.contiguous().cpu();
  Sha256 hasher;
  const std::string dtype(c10::toString(t.scalar_type()));
  hasher.Update(dtype);
  for (int64_t d : t.sizes()) {
    hasher.Update(absl::string_view(reinterpret_cast<const char*>(&d), sizeof(d)));
  }
  hasher.Update(absl::string_view(static_cast<const char*>(t.data_ptr()), t.nbytes()));
  uint64_t key = 0;
  const bool ok = absl::SimpleHexAtoi(hasher.HexDigest().substr(0, 16), &key);
  (void)ok;  // 16 hex digits always parse
  return key;
}

std::vector<uint64_t> RowKeys(const torch::Tensor& inputs) {
  std::vector<uint64_t> keys;
  keys.reserve(inputs.size(0));
  for (int64_t r = 0; r < inputs.size(0); ++r) keys.push_back(RowKey(inputs[r]));
  return keys;
}

SampledTargets SampleTargets(const torch::Tensor& log_probs, int64_t samples,
                             const std::vector<uint64_t>& row_keys) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(samples >= 1, "SampleTargets: samples must be >= 1");
  TORCH_CHECK(!row_keys.empty() && log_probs.dim() == 2 &&
                  log_probs.size(0) % static_cast<int64_t>(row_keys.size()) == 0,
              "SampleTargets: ", log_probs.sizes(), " positions do not split into ",
              row_keys.size(), " rows");
  const int64_t positions = log_probs.size(0);
  const int64_t per_row = positions / static_cast<int64_t>(row_keys.size());
  const torch::Tensor probs = log_probs.to(torch::kFloat32).exp();
  std::vector<torch::Tensor> draws;
  draws.reserve(row_keys.size());
  for (size_t r = 0; r < row_keys.size(); ++r) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(row_keys[r]);
    draws.push_back(at::multinomial(probs.narrow(0, static_cast<int64_t>(r) * per_row, per_row),
                                    samples, /*replacement=*/true, gen));
  }
  // Distinct ids and their counts per position, vectorised: sort each
  // position's draws, number the runs of equal ids, and scatter.
  torch::Tensor sorted = std::get<0>(torch::cat(draws).sort(/*dim=*/1));  // [P, N]
  torch::Tensor starts = torch::ones_like(sorted, torch::kInt64);
  if (samples > 1) {
    starts.narrow(1, 1, samples - 1)
        .copy_(sorted.narrow(1, 1, samples - 1) != sorted.narrow(1, 0, samples - 1));
  }
  torch::Tensor group = starts.cumsum(1) - 1;  // [P, N] in 0..m_p-1
  const int64_t m = group.max().item<int64_t>() + 1;
  SampledTargets out;
  out.samples = samples;
  out.ids = torch::zeros({positions, samples}, torch::kInt64)
                .scatter_(1, group, sorted)
                .narrow(1, 0, m)
                .contiguous();
  out.counts = torch::zeros({positions, samples}, torch::kInt32)
                   .scatter_add_(1, group, torch::ones_like(group, torch::kInt32))
                   .narrow(1, 0, m)
                   .contiguous();
  return out;
}

}  // namespace retort::teacher
