#include "common/metrics_writer.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace retort {

absl::StatusOr<std::unique_ptr<MetricsWriter>> MetricsWriter::Create(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "a");
  if (file == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot open metrics file ", path, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<MetricsWriter>(new MetricsWriter(path, file));
}

MetricsWriter::~MetricsWriter() { std::fclose(file_); }

absl::Status MetricsWriter::Write(const nlohmann::json& record) {
  std::string line = record.dump();
  line += '\n';
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    return absl::InternalError(absl::StrCat("cannot write metrics to ", path_));
  }
  return absl::OkStatus();
}

}  // namespace retort
