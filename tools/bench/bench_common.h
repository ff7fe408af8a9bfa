// Pieces the benchmark commands share.
#ifndef RETORT_TOOLS_BENCH_BENCH_COMMON_H_
#define RETORT_TOOLS_BENCH_BENCH_COMMON_H_

#include <string>

#include "absl/status/statusor.h"

namespace retort::cli {

// --checkpoint when given; otherwise a freshly initialised teacher of
// --teacher_arch/--teacher_hidden written under `scratch` (throughput does
// not depend on what the weights learned).
absl::StatusOr<std::string> BenchTeacherCheckpoint(const std::string& scratch);

}  // namespace retort::cli

#endif  // RETORT_TOOLS_BENCH_BENCH_COMMON_H_
