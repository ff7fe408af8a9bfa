// A read-only memory map of a whole file: the pages are the kernel's page
// cache, shared by every process that maps the same file, and read on first
// touch. Token shards and the teacher-logit cache are read through it.
#ifndef RETORT_COMMON_MAPPED_FILE_H_
#define RETORT_COMMON_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace retort {

class MappedFile {
 public:
  // NOT_FOUND (naming the file) when it cannot be opened; INTERNAL when it
  // cannot be mapped. An empty file maps to size() == 0, data() == nullptr.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace retort

#endif  // RETORT_COMMON_MAPPED_FILE_H_
