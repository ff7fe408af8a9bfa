// The safetensors container format (Hugging Face), without LibTorch:
//
//   [8 bytes: N, little-endian u64][N bytes: JSON header][data bytes]
//
// The header maps each tensor name to {"dtype", "shape", "data_offsets":
// [begin, end]} (offsets relative to the start of the data bytes), plus an
// optional "__metadata__" object of string values. ParseSafetensorsHeader
// validates everything a reader relies on before any tensor is touched, so a
// hostile file is rejected with an error that says what is wrong:
//   - the length prefix fits the file and a sane bound;
//   - the header is a JSON object; every entry has a known dtype, a shape of
//     non-negative integers and offsets with begin <= end <= data size;
//   - each tensor's byte count is exactly its element count times its dtype
//     size (no overflow);
//   - the tensors tile the data region: no overlap, no hole, nothing after.
// SerializeSafetensorsHeader writes the prefix and header for tensors laid
// out in the given order (the header padded with spaces to 8 bytes, as the
// reference implementation does).
#ifndef RETORT_MODELS_SAFETENSORS_FORMAT_H_
#define RETORT_MODELS_SAFETENSORS_FORMAT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace retort::models {

enum class SafetensorsDtype { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32" etc. INVALID_ARGUMENT naming the known ones otherwise.
absl::StatusOr<SafetensorsDtype> ParseSafetensorsDtype(absl::string_view name);
absl::string_view SafetensorsDtypeName(SafetensorsDtype dtype);
int SafetensorsDtypeSize(SafetensorsDtype dtype);

struct SafetensorsEntry {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets into the data region
  uint64_t end = 0;
};

struct SafetensorsIndex {
  uint64_t data_start = 0;                // 8 + header length: where the data region begins
  std::vector<SafetensorsEntry> tensors;  // in data order
  std::map<std::string, std::string> metadata;
};

// Headers larger than this are refused (the reference reader's bound).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = uint64_t{100} << 20;

// `prefix` holds at least the first 8 + N bytes of a file of `file_size`
// bytes (or the whole file if shorter). DATA_LOSS or INVALID_ARGUMENT with
// the reason otherwise.
absl::StatusOr<SafetensorsIndex> ParseSafetensorsHeader(absl::string_view prefix,
                                                        uint64_t file_size);

// The 8-byte prefix and header for `tensors` (their begin/end are assigned
// here, contiguous in the given order); the data follows in that order.
absl::StatusOr<std::string> SerializeSafetensorsHeader(
    std::vector<SafetensorsEntry>& tensors, const std::map<std::string, std::string>& metadata);

}  // namespace retort::models

#endif  // RETORT_MODELS_SAFETENSORS_FORMAT_H_
