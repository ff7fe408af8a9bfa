// libFuzzer target: Distill request parts, as a client (or an attacker) could
// send them, through RequestAssembler and ValidateDistillRequest. Beyond "no
// crash, leak or undefined behaviour" it checks the documented contract:
// errors are INVALID_ARGUMENT (RESOURCE_EXHAUSTED for too many pending
// requests) and start with "request <sequence>: ", at most max_pending
// requests wait, and a request that validates has exactly the bytes its shape
// needs, finite float inputs, token ids in the vocabulary and a temperature
// and k within the limits. The input format is in
// distill_request_fuzz_format.h.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include <google/protobuf/stubs/logging.h>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "teacher/request_validation.h"
#include "tests/fuzz/distill_request_fuzz_format.h"

namespace retort::fuzz {
namespace {

#define FUZZ_CHECK(cond, what)                                                               \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s: %s\n", #cond, std::string(what).c_str()); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (false)

void CheckError(const absl::Status& status, uint64_t sequence, bool may_be_exhausted) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument ||
                 (may_be_exhausted && status.code() == absl::StatusCode::kResourceExhausted),
             status.ToString());
  FUZZ_CHECK(absl::StartsWith(status.message(), absl::StrCat("request ", sequence, ": ")),
             status.ToString());
}

// What must hold of a request ValidateDistillRequest accepted.
void CheckAccepted(const v1::DistillRequest& r, const v1::TeacherFingerprint& fp,
                   const v1::ServerLimits& limits) {
  const v1::Tensor& in = r.inputs();
  FUZZ_CHECK(in.dtype() == fp.input_dtype(), "dtype");
  FUZZ_CHECK(in.shape_size() == fp.input_shape_size() + 1, "rank");
  const int64_t rows = in.shape(0);
  FUZZ_CHECK(rows >= 1 && rows <= limits.max_rows_per_request(), "rows");
  int64_t per_row = 1;
  for (int i = 0; i < fp.input_shape_size(); ++i) {
    const int64_t d = in.shape(i + 1);
    if (fp.input_shape(i) == -1) {
      FUZZ_CHECK(d >= 1 && d <= limits.max_sequence_length(), "sequence length");
    } else {
      FUZZ_CHECK(d == fp.input_shape(i), "dimension");
    }
    per_row *= d;
  }
  FUZZ_CHECK(static_cast<int64_t>(in.data().size()) == rows * per_row * 4, "bytes");
  for (size_t i = 0; i < in.data().size(); i += 4) {
    if (in.dtype() == v1::DTYPE_FLOAT32) {
      float v;
      std::memcpy(&v, in.data().data() + i, 4);
      FUZZ_CHECK(std::isfinite(v), "finite inputs");
    } else {
      int32_t id;
      std::memcpy(&id, in.data().data() + i, 4);
      FUZZ_CHECK(id >= 0 && id < fp.num_classes(), "token ids");
    }
  }
  FUZZ_CHECK(std::isfinite(r.temperature()) && r.temperature() >= limits.min_temperature() &&
                 r.temperature() <= limits.max_temperature(),
             "temperature");
  if (r.output() == v1::OUTPUT_TOP_K) {
    FUZZ_CHECK(r.top_k() >= 1 && r.top_k() <= fp.num_classes() && r.top_k() <= limits.max_top_k(),
               "top_k");
  } else {
    FUZZ_CHECK(r.output() == v1::OUTPUT_DENSE && r.top_k() == 0, "output");
  }
  FUZZ_CHECK(r.hidden_layers_size() <= fp.hidden_layers_size(), "hidden layers");
}

void Validate(const v1::DistillRequest& request, const v1::TeacherFingerprint& fp,
              const v1::ServerLimits& limits) {
  const absl::Status status = teacher::ValidateDistillRequest(request, fp, limits);
  if (status.ok()) {
    CheckAccepted(request, fp, limits);
  } else {
    CheckError(status, request.sequence(), /*may_be_exhausted=*/false);
  }
}

}  // namespace
}  // namespace retort::fuzz

// Parse failures (e.g. hidden layer names that are not UTF-8) are expected;
// protobuf's log line for each would drown libFuzzer's output.
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace retort;        // NOLINT(build/namespaces)
  using namespace retort::fuzz;  // NOLINT(build/namespaces)
  if (size == 0) return 0;
  static const v1::TeacherFingerprint* const kImage =
      new v1::TeacherFingerprint(ImageFingerprint());
  static const v1::TeacherFingerprint* const kTokens =
      new v1::TeacherFingerprint(TokenFingerprint());
  const FuzzConfig config = ConfigFromByte(data[0]);
  teacher::RequestAssembler assembler(config.max_request_bytes, config.max_pending,
                                      config.max_request_bytes * 16);
  size_t at = 1;
  while (at < size) {
    size_t n = data[at];
    if (at + 1 < size) n |= static_cast<size_t>(data[at + 1]) << 8;
    at += 2;
    if (at > size) break;
    n = std::min(n, size - at);
    v1::DistillRequest part;
    const bool parsed = part.ParseFromArray(data + at, static_cast<int>(n));
    at += n;
    if (!parsed) continue;
    const uint64_t sequence = part.sequence();
    const size_t part_bytes = part.inputs().data().size();
    // Only a multi-part request (completed by a part after part 0) is held
    // to the assembler's byte limit; a single part passes to validation.
    const bool joined_from_parts = part.part() > 0;
    absl::StatusOr<std::optional<v1::DistillRequest>> joined = assembler.Add(std::move(part));
    FUZZ_CHECK(assembler.pending() <= config.max_pending, "pending");
    if (!joined.ok()) {
      CheckError(joined.status(), sequence, /*may_be_exhausted=*/true);
      continue;
    }
    if (!joined->has_value()) continue;
    const v1::DistillRequest& request = **joined;
    FUZZ_CHECK(request.sequence() == sequence, "sequence");
    FUZZ_CHECK(request.part() == 0 && request.part_count() <= 1, "joined request is whole");
    FUZZ_CHECK(!joined_from_parts ||
                   static_cast<int64_t>(request.inputs().data().size()) <= config.max_request_bytes,
               "request bytes");
    FUZZ_CHECK(request.inputs().data().size() >= part_bytes, "joined data");
    Validate(request, *kImage, config.image_limits);
    Validate(request, *kTokens, config.token_limits);
  }
  return 0;
}
