#include "common/metrics_writer.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"

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

absl::Status DropRecordsAfterStep(const std::string& path, int64_t step) {
  absl::StatusOr<std::string> contents = ReadFile(path);
  if (!contents.ok()) {
    return absl::IsNotFound(contents.status()) ? absl::OkStatus() : contents.status();
  }
  std::string kept;
  size_t begin = 0;
  while (begin < contents->size()) {
    const size_t end = contents->find('\n', begin);
    if (end == std::string::npos) break;  // a torn last line
    const std::string line = contents->substr(begin, end - begin);
    begin = end + 1;
    nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
    if (record.is_discarded()) continue;
    if (record.is_object() && record.contains("step") && record["step"].is_number_integer() &&
        record["step"].get<int64_t>() > step) {
      continue;
    }
    kept += line;
    kept += '\n';
  }
  return WriteFileAtomically(path, kept);
}

}  // namespace retort
