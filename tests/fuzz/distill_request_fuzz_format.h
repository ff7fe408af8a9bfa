// The input format of distill_request_fuzzer, shared with the seed generator.
//
//   byte 0      configuration: bits 0-1 pick max_pending (1 + value), bits 2-3
//               max_request_bytes (4 KiB, 16 KiB, 64 KiB, 1 MiB), bits 4-5
//               max_rows_per_request (1, 4, 64, 4096), bit 6 max_top_k (5 or
//               64)
//   then frames 2-byte little-endian length n, then n bytes: one serialized
//               DistillRequest (part). A short last frame takes what is left.
//
// Every complete request is validated against two teachers: an image model
// (float32 [1, 28, 28], 10 classes, hidden layers fc0 and fc1) and a token
// model (int32 [-1], a vocabulary of 1000, sequences up to 64 tokens).
#ifndef RETORT_TESTS_FUZZ_DISTILL_REQUEST_FUZZ_FORMAT_H_
#define RETORT_TESTS_FUZZ_DISTILL_REQUEST_FUZZ_FORMAT_H_

#include <cstdint>
#include <string>

#include "retort/v1/teacher.pb.h"

namespace retort::fuzz {

struct FuzzConfig {
  int max_pending;
  int64_t max_request_bytes;
  v1::ServerLimits image_limits;
  v1::ServerLimits token_limits;
};

inline FuzzConfig ConfigFromByte(uint8_t b) {
  static constexpr int64_t kRequestBytes[] = {int64_t{1} << 12, int64_t{1} << 14, int64_t{1} << 16,
                                              int64_t{1} << 20};
  static constexpr int64_t kRows[] = {1, 4, 64, 4096};
  FuzzConfig config;
  config.max_pending = 1 + (b & 3);
  config.max_request_bytes = kRequestBytes[(b >> 2) & 3];
  v1::ServerLimits& limits = config.image_limits;
  limits.set_max_rows_per_request(kRows[(b >> 4) & 3]);
  limits.set_min_temperature(0.05);
  limits.set_max_temperature(100);
  limits.set_max_top_k((b & 0x40) != 0 ? 5 : 64);
  limits.set_max_message_bytes(1 << 20);
  config.token_limits = limits;
  config.token_limits.set_max_sequence_length(64);
  return config;
}

inline v1::TeacherFingerprint ImageFingerprint() {
  v1::TeacherFingerprint fp;
  fp.set_architecture("mlp 784-16-8-10");
  for (int64_t d : {1, 28, 28}) fp.add_input_shape(d);
  fp.set_input_dtype(v1::DTYPE_FLOAT32);
  fp.set_num_classes(10);
  for (const char* name : {"fc0", "fc1"}) fp.add_hidden_layers()->set_name(name);
  fp.mutable_hidden_layers(0)->add_shape(16);
  fp.mutable_hidden_layers(1)->add_shape(8);
  return fp;
}

inline v1::TeacherFingerprint TokenFingerprint() {
  v1::TeacherFingerprint fp;
  fp.set_architecture("token model, vocabulary 1000");
  fp.add_input_shape(-1);
  fp.set_input_dtype(v1::DTYPE_INT32);
  fp.set_num_classes(1000);
  return fp;
}

// Appends one frame holding `part` to `out`.
inline void AppendFrame(const v1::DistillRequest& part, std::string* out) {
  const std::string bytes = part.SerializeAsString();
  const size_t n = bytes.size() < 0xFFFF ? bytes.size() : 0xFFFF;
  out->push_back(static_cast<char>(n & 0xFF));
  out->push_back(static_cast<char>(n >> 8));
  out->append(bytes, 0, n);
}

}  // namespace retort::fuzz

#endif  // RETORT_TESTS_FUZZ_DISTILL_REQUEST_FUZZ_FORMAT_H_
