// Sampled targets: per position, N draws from the teacher's distribution at
// temperature T, kept as the distinct ids drawn and how often each was
// drawn. counts / N is an unbiased estimate of the teacher's distribution
// ("Sparse Logit Sampling", Anshumann et al., ACL 2025): the gradient of the
// forward KL (equivalently, of the cross-entropy) of a student against it
// equals the gradient against the dense distribution in expectation, where a
// top-k cut is biased towards the head. The third output kind next to dense
// and top-k, on the wire (teacher/wire_codec.h) and in the teacher-logit
// cache (cache/).
//
// Draws are reproducible per row: each row's draws come from a generator
// seeded by a key of that row's inputs (RowKey), so a sequence gets the same
// targets whatever batch, rank or process asks for it.
#ifndef RETORT_TEACHER_SAMPLED_TARGETS_H_
#define RETORT_TEACHER_SAMPLED_TARGETS_H_

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "teacher/top_k.h"

namespace retort::teacher {

struct SampledTargets {
  // int64 [positions, m]: the distinct ids drawn at each position, in
  // increasing order, then padding (id 0 with count 0) up to m, the largest
  // number of distinct ids at any position.
  torch::Tensor ids;
  // int32 [positions, m]: how often each id was drawn; each row sums to
  // `samples`.
  torch::Tensor counts;
  int64_t samples = 0;

  // The estimate in top-k form, for the student loss: values log(count / N)
  // (-inf for padding, which the loss counts as zero mass) and tail -inf.
  TopKLogProbs ToTopK() const;
};

// A stable 64-bit key of one row of inputs (its bytes, dtype and shape): the
// first 8 bytes of their SHA-256. Token rows are int64.
uint64_t RowKey(const torch::Tensor& row);

// Draws `samples` ids per position from exp(log_probs) (float [positions,
// C], rows of `positions / row_keys.size()` positions each); row r's draws
// come from a generator seeded by row_keys[r]. samples >= 1.
SampledTargets SampleTargets(const torch::Tensor& log_probs, int64_t samples,
                             const std::vector<uint64_t>& row_keys);

// RowKey of each row of `inputs` [rows, ...].
std::vector<uint64_t> RowKeys(const torch::Tensor& inputs);

}  // namespace retort::teacher

#endif  // RETORT_TEACHER_SAMPLED_TARGETS_H_
