#include "common/tokenizer_files.h"

#include "absl/strings/match.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace retort {

std::string TokenizerFileNameFor(const std::string& path) {
  return absl::EndsWith(path, ".json") ? kHfTokenizerFileName : kSentencePieceFileName;
}

std::string FindTokenizerFile(const std::string& dir) {
  for (const char* name : {kHfTokenizerFileName, kSentencePieceFileName}) {
    const std::string path = dir + "/" + name;
    if (PathExists(path)) return path;
  }
  return "";
}

absl::Status CopyTokenizerInto(const std::string& path, const std::string& dir) {
  if (path.empty()) return absl::OkStatus();
  RETORT_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return WriteFileAtomically(dir + "/" + TokenizerFileNameFor(path), bytes);
}

}  // namespace retort
