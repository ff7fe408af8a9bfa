// Plain text for language-model data: the King James Bible from Debian's
// bible-kjv package, and line-wise reading of text files.
#ifndef RETORT_DATA_TEXT_CORPUS_H_
#define RETORT_DATA_TEXT_CORPUS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace retort::data {

// Verses in the King James Bible as bible-kjv prints it.
inline constexpr int64_t kKjvVerseCount = 31102;

// Writes the whole King James Bible to `path`, one verse a line (Genesis 1:1
// first), as plain English: the "Ge1:1 " reference labels are removed and
// trailing spaces trimmed. Runs `bible -f Gen1:1-Rev22:21` (one verse a line,
// no wrapping) and replaces `path` atomically. NOT_FOUND with "install
// bible-kjv" when the `bible` program is missing; INTERNAL when it fails;
// DATA_LOSS when its output is not the expected "Ref text" lines.
absl::Status WriteKjvText(const std::string& path);

// Calls `visit` with each line of `files`, in order, without its line ending
// ("\n" or "\r\n"), skipping lines that are empty or only whitespace. Stops at
// the first error `visit` returns. INVALID_ARGUMENT for an empty list or a
// path that is not a regular file; NOT_FOUND / PERMISSION_DENIED naming a file
// that is missing or unreadable; DATA_LOSS when reading fails midway.
absl::Status ForEachTextLine(const std::vector<std::string>& files,
                             const std::function<absl::Status(const std::string&)>& visit);

// All lines ForEachTextLine visits, in memory.
absl::StatusOr<std::vector<std::string>> ReadTextLines(const std::vector<std::string>& files);

}  // namespace retort::data

#endif  // RETORT_DATA_TEXT_CORPUS_H_
