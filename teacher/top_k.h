// The top-k form of log-probabilities: per row (a classifier's input or a
// language model's position) the k largest log-probabilities, their class
// indices and the log of the mass outside them, so a student can build an
// exact-mass distribution. What a teacher answers with for language models,
// on the wire (teacher/wire_codec.h) and in process alike.
#ifndef RETORT_TEACHER_TOP_K_H_
#define RETORT_TEACHER_TOP_K_H_

#include <cstdint>

#include <torch/torch.h>

namespace retort::teacher {

struct TopKLogProbs {
  torch::Tensor indices;        // int64 [positions, k]
  torch::Tensor values;         // float32 [positions, k]
  torch::Tensor tail_log_mass;  // float32 [positions]
  // The dense distribution with the tail spread evenly over other classes.
  // Entries at -inf (padding) leave their class to that spread.
  torch::Tensor ToDense(int64_t num_classes) const;
};

// Top-k of dense log-probabilities [positions, C], with the exact tail mass.
TopKLogProbs TopK(const torch::Tensor& log_probs, int64_t k);

// Dense log-probabilities [positions, C] in top-k form with k = C (indices
// 0..C-1 in order, tail -inf), for code that consumes top-k answers.
TopKLogProbs DenseAsTopK(const torch::Tensor& log_probs);

}  // namespace retort::teacher

#endif  // RETORT_TEACHER_TOP_K_H_
