// Appends metrics as JSON lines (one JSON object a line) to a file, so runs
// can be plotted and compared by tools. Not thread-safe.
#ifndef RETORT_COMMON_METRICS_WRITER_H_
#define RETORT_COMMON_METRICS_WRITER_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace retort {

class MetricsWriter {
 public:
  // Opens `path` for appending (a resumed run continues its file).
  static absl::StatusOr<std::unique_ptr<MetricsWriter>> Create(const std::string& path);
  ~MetricsWriter();

  // Writes `record` as one line and flushes it.
  absl::Status Write(const nlohmann::json& record);

 private:
  MetricsWriter(std::string path, FILE* file) : path_(std::move(path)), file_(file) {}
  std::string path_;
  FILE* file_;
};

// Rewrites a JSON-lines file (atomically) without the records whose "step"
// is above `step`, and without a torn last line: a run resumed from the
// checkpoint of `step` then logs each later step once. A missing file is
// fine.
absl::Status DropRecordsAfterStep(const std::string& path, int64_t step);

}  // namespace retort

#endif  // RETORT_COMMON_METRICS_WRITER_H_
