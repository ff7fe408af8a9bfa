// Reader for IDX files (the MNIST / Fashion-MNIST format), plain or gzip.
//
// Layout: two zero bytes, a type byte (0x08 = unsigned byte), a byte with the
// number of dimensions, then each dimension as a big-endian uint32, then the
// elements. Every check failure names the file and what is wrong with it.
#ifndef RETORT_DATA_IDX_READER_H_
#define RETORT_DATA_IDX_READER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace retort::data {

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> values;  // product(dims) elements, row-major
};

// Reads and validates an IDX file of unsigned bytes. Files ending in ".gz"
// are decompressed. Errors: NOT_FOUND for a missing file, DATA_LOSS for a
// truncated or malformed one, INVALID_ARGUMENT for an unsupported type.
absl::StatusOr<IdxArray> ReadIdxFile(const std::string& path);

// Parses IDX bytes already in memory; `name` is used in error messages.
absl::StatusOr<IdxArray> ParseIdx(const std::string& name, const std::string& bytes);

}  // namespace retort::data

#endif  // RETORT_DATA_IDX_READER_H_
