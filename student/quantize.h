// Weight quantization of a trained student (models/block_quant.h holds the
// arithmetic): int8 per output channel, or 4-bit in groups of 32, 64 or 128
// columns, symmetric, calibration-free.
//
// Language models (QuantizeLlama) are really quantized: every projection
// keeps only its codes and scales and dequantizes them on the fly in
// forward(), and saving the model writes the quantized layout
// (models/llama_checkpoint.h). Classifiers (QuantizeClassifier) have their
// Linear and Conv2d weights replaced by the dequantized values: the
// arithmetic, and so the accuracy, is exactly what a quantized runtime
// computes, but the model in memory stays float32. Biases and norm scales
// stay float32 in both.
#ifndef RETORT_STUDENT_QUANTIZE_H_
#define RETORT_STUDENT_QUANTIZE_H_

#include <cstdint>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "models/causal_lm.h"
#include "models/classifier.h"
#include "models/llama.h"

namespace retort::student {

struct QuantizeOptions {
  int bits = 8;            // 8 or 4
  int64_t group_size = 0;  // 0: one scale per output row (per-channel)
  bool embeddings = true;  // language models: quantize the embedding matrix too

  // "int8" -> bits 8 per-channel; "int4" / "q4" -> bits 4, group 64 unless
  // `group_size` is given; "int8-g32" / "int4-g128" set the group.
  static absl::StatusOr<QuantizeOptions> Parse(const std::string& scheme, int64_t group_size);
  std::string Describe() const;  // "int8 per-channel", "int4 g64"
};

struct QuantizeReport {
  int64_t quantized_tensors = 0;
  // Weights whose columns the group does not divide: quantized to int8 per
  // channel instead (models::QuantizeWithFallback).
  int64_t fallback_tensors = 0;
  int64_t quantized_elements = 0;
  int64_t float_bytes = 0;      // of all weights before, as float32
  int64_t quantized_bytes = 0;  // of all weights after: codes packed + float32 scales + float rest
  double max_relative_error = 0;  // max over tensors of ||W - Q(W)|| / ||W||
};

// Quantizes `model` in place. FAILED_PRECONDITION when the model is already
// quantized; INVALID_ARGUMENT (naming the tensor) for a non-finite weight.
// Any causal LM: a Llama, or a sliced one (its shortcut and rotation
// matrices stay float32).
absl::StatusOr<QuantizeReport> QuantizeLlama(const QuantizeOptions& options,
                                             models::CausalLm* model);
// A float model computing exactly what the quantized `model` computes (every
// projection holds its dequantized weight): for formats without our
// quantized layout.
std::shared_ptr<models::LlamaModel> DequantizeLlama(models::LlamaModel& model);

absl::StatusOr<QuantizeReport> QuantizeClassifier(const QuantizeOptions& options,
                                                  models::Classifier* model);

}  // namespace retort::student

#endif  // RETORT_STUDENT_QUANTIZE_H_
