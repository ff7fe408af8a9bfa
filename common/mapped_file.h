// MappedFile: a whole file mapped into memory, copy-on-write (weights
// files, token shards, the teacher-logit cache).
//
// Pages are read from the file when first touched and can be dropped by the
// kernel under memory pressure (they are the page cache's), so mapping a
// multi-GB weights file costs its size in resident memory only as it is
// read. Writes go to private copies of the touched pages; the file is never
// changed. Immutable after Map; the mapping lives until the last shared_ptr
// to it is released (tensors viewing it hold one).
#ifndef RETORT_COMMON_MAPPED_FILE_H_
#define RETORT_COMMON_MAPPED_FILE_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace retort {

class MappedFile {
 public:
  // NOT_FOUND for a missing file; INTERNAL naming the file when it cannot be
  // opened or mapped. An empty file maps to an empty view.
  static absl::StatusOr<std::shared_ptr<MappedFile>> Map(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  char* data() const { return data_; }
  size_t size() const { return size_; }
  absl::string_view view() const { return absl::string_view(data_, size_); }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  char* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace retort

#endif  // RETORT_COMMON_MAPPED_FILE_H_
