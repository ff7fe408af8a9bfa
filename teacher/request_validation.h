// Checks Distill requests before any LibTorch work, and reassembles requests
// sent in several parts. Torch-free, so the libFuzzer target
// (tests/fuzz/distill_request_fuzzer.cc) can drive it directly.
//
// Every error is INVALID_ARGUMENT, starts with "request <sequence>: " and
// says what was wrong and where (which field, row or element).
#ifndef RETORT_TEACHER_REQUEST_VALIDATION_H_
#define RETORT_TEACHER_REQUEST_VALIDATION_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "retort/v1/teacher.pb.h"

namespace retort::teacher {

// Bytes per element of a wire dtype; 0 for DTYPE_UNSPECIFIED and unknown
// values.
int64_t DTypeSize(v1::DType dtype);
// "float32", "bfloat16", ...; "dtype(<n>)" for unknown values.
std::string DTypeName(v1::DType dtype);

// Checks one Tensor message: known dtype, non-negative dimensions whose
// product does not overflow, and len(data) == product * sizeof(dtype).
// `what` names the tensor in errors.
absl::Status ValidateWireTensor(const v1::Tensor& tensor, const std::string& what);

// Checks a complete (reassembled) request against the teacher it is for and
// the server's limits: input dtype and shape, row and sequence limits,
// finite float inputs, token ids within the vocabulary, temperature, output
// kind, k, value dtype and hidden layer names.
absl::Status ValidateDistillRequest(const v1::DistillRequest& request,
                                    const v1::TeacherFingerprint& fingerprint,
                                    const v1::ServerLimits& limits);

// Joins the parts of multi-part requests arriving on one stream. Not
// thread-safe (one stream reader owns it).
class RequestAssembler {
 public:
  // A multi-part request whose parts total more than `max_request_bytes` of
  // input data or more than `max_query_bytes` of query ids, or more than
  // `max_pending` requests with missing parts, is refused. Single-part
  // requests pass through (their size is the transport's to bound;
  // ValidateDistillRequest checks their rows).
  RequestAssembler(int64_t max_request_bytes, int max_pending, int64_t max_query_bytes = 0);

  // Adds one part. Returns the whole request once its last part arrived,
  // std::nullopt while parts are missing, or an error for a malformed part
  // (the partial request is dropped).
  absl::StatusOr<std::optional<v1::DistillRequest>> Add(v1::DistillRequest part);

  int pending() const { return static_cast<int>(pending_.size()); }

 private:
  int64_t max_request_bytes_;
  int max_pending_;
  int64_t max_query_bytes_;
  std::map<uint64_t, v1::DistillRequest> pending_;  // part 0 with the data so far
};

// Checks `names` against the hidden layers `fingerprint` exposes:
// INVALID_ARGUMENT naming a repeated or unknown layer (listing the known
// ones).
absl::Status ValidateHiddenLayers(const v1::TeacherFingerprint& fingerprint,
                                  const std::vector<std::string>& names);

}  // namespace retort::teacher

#endif  // RETORT_TEACHER_REQUEST_VALIDATION_H_
