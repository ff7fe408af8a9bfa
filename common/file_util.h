// Small filesystem helpers with Status errors that name the path.
#ifndef RETORT_COMMON_FILE_UTIL_H_
#define RETORT_COMMON_FILE_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace retort {

// Reads a whole file. NOT_FOUND when it does not exist.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// ReadFile for a path given by a flag: errors start with "--<flag>: ".
absl::StatusOr<std::string> ReadFileForFlag(const std::string& flag, const std::string& path);

// Writes `contents` to `path` so that readers see either the old file or the
// complete new one, even across a crash: the data goes to a temporary file in
// the same directory, is fsynced, renamed over `path`, and the directory is
// fsynced.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

// Creates `path` and any missing parents.
absl::Status MakeDirs(const std::string& path);

bool PathExists(const std::string& path);

// fsyncs a file or a directory, so its data (or its entries) survive a crash.
absl::Status SyncPath(const std::string& path);

// Returns the size of a regular file in bytes.
absl::StatusOr<int64_t> FileSize(const std::string& path);

}  // namespace retort

#endif  // RETORT_COMMON_FILE_UTIL_H_
