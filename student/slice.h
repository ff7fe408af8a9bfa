// SliceGPT (Ashkboos et al. 2024) for Llama-family students (every family:
// Qwen2's q/k/v biases are added to the projections' outputs and Qwen3's
// q/k norms act on the heads, so neither meets the rotated stream and both
// are kept as they are): delete whole directions of the residual stream,
// giving a smaller dense model (models/sliced_llama.h).
//
//  1. Fold every RMSNorm scale into the matrices that read its output
//     (q/k/v for the attention norm, gate/up for the MLP norm, the output
//     head for the final norm); RMSNorm without a scale commutes with any
//     orthogonal Q: rmsnorm(x Q) = rmsnorm(x) Q.
//  2. Run the calibration tokens through the model one block at a time, in
//     float64. At each point where the residual stream is read (the
//     embeddings, between attention and MLP, after each block) take the
//     covariance of the normalised signal, sum_t xhat_t^T xhat_t, and its
//     eigenvectors Q in order of decreasing eigenvalue.
//  3. Rotate every matrix that reads the stream by Q (W <- W Q) and every
//     matrix that writes it by Q^T (W <- Q^T W), and keep the first `width`
//     directions; the residual path between two points with bases Q_a and
//     Q_b becomes the shortcut matrix Q_a^T Q_b (width x width). Each
//     point's Q is computed from the signal of the already sliced earlier
//     blocks, so errors do not compound unseen.
// With width = hidden_size nothing is deleted and the sliced model computes
// the same function (tests check 1e-4).
#ifndef RETORT_STUDENT_SLICE_H_
#define RETORT_STUDENT_SLICE_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "data/dataset.h"
#include "models/llama.h"
#include "models/sliced_llama.h"

namespace retort::student {

struct SliceOptions {
  double fraction = 0.25;   // of the hidden width deleted, in [0, 1)
  int64_t multiple_of = 8;  // the kept width rounds to a multiple of this
  int64_t calibration_sequences = 128;
  int64_t batch_size = 16;
};

struct SliceReport {
  int64_t width = 0;  // kept dimensions of the residual stream
  // Share of the normalised signal's energy (sum of eigenvalues) kept, at
  // each point where the stream is read: the embeddings, then per block
  // after attention and after the MLP.
  std::vector<double> kept_energy;
};

// The sliced model of a float `model`. `calibration` yields token inputs
// int64 [B, T]. INVALID_ARGUMENT for a fraction out of range or empty
// calibration data; FAILED_PRECONDITION for a quantized model.
absl::StatusOr<std::shared_ptr<models::SlicedLlamaModel>> SliceLlama(
    models::LlamaModel& model, const data::Dataset& calibration, const SliceOptions& options,
    SliceReport* report = nullptr);

}  // namespace retort::student

#endif  // RETORT_STUDENT_SLICE_H_
