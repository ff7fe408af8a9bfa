// The GGUF container (version 3), the file format llama.cpp and the tools
// around it load, without LibTorch:
//
//   "GGUF" | u32 version | u64 tensor count | u64 metadata count
//   metadata: (string key, u32 value type, value)*
//   tensor infos: (string name, u32 n_dims, u64 dims[n_dims] (innermost
//                  first), u32 ggml type, u64 offset into the data)*
//   padding to general.alignment (32 by default), then the tensor data, each
//   tensor at an aligned offset.
// Strings are u64 length + bytes; all integers little-endian.
//
// ParseGguf validates everything a reader relies on before any tensor is
// touched and rejects a hostile file with DATA_LOSS saying what is wrong:
// the magic and version; counts, string lengths and array lengths that fit
// the bytes left; known value types, arrays not nested; tensor ranks of 1 to
// 4, dims whose product does not overflow, rows that are whole blocks of the
// tensor's type; known tensor types (F32, F16, BF16, Q8_0, Q4_0); aligned
// offsets; tensors inside the file that do not overlap; unique names.
//
// SerializeGguf writes such a file from metadata and tensor bytes.
#ifndef RETORT_MODELS_GGUF_FORMAT_H_
#define RETORT_MODELS_GGUF_FORMAT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace retort::models {

enum class GgufValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// One metadata value. Scalars use the member of their kind (integers in
// `integer`, floats in `real`); arrays hold `array_type` elements in `array`.
struct GgufValue {
  GgufValueType type = GgufValueType::kU32;
  int64_t integer = 0;  // every integer type (u64 above 2^63 reads back negative) and bool
  double real = 0;
  std::string string;
  GgufValueType array_type = GgufValueType::kU32;
  std::vector<GgufValue> array;

  static GgufValue U32(uint32_t v);
  static GgufValue I32(int32_t v);
  static GgufValue F32(float v);
  static GgufValue Bool(bool v);
  static GgufValue String(std::string v);
  static GgufValue Strings(const std::vector<std::string>& v);
  static GgufValue F32s(const std::vector<float>& v);
  static GgufValue I32s(const std::vector<int32_t>& v);
};

// ggml tensor types we read and write.
enum class GgmlType : uint32_t { kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ8_0 = 8, kBF16 = 30 };

absl::string_view GgmlTypeName(GgmlType type);
// Elements per block and bytes per block: F32 1/4, F16 and BF16 1/2,
// Q8_0 32/34 (f16 scale + 32 int8), Q4_0 32/18 (f16 scale + 16 bytes).
int64_t GgmlBlockElements(GgmlType type);
int64_t GgmlBlockBytes(GgmlType type);

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // innermost first: a [rows, cols] matrix is {cols, rows}
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;  // into the data region
  uint64_t bytes = 0;   // computed from dims and type

  uint64_t elements() const;
};

struct GgufFile {
  uint32_t version = 3;
  std::vector<std::pair<std::string, GgufValue>> metadata;
  std::vector<GgufTensorInfo> tensors;
  uint64_t alignment = 32;
  uint64_t data_start = 0;  // file offset of the data region

  // The value under `key`, or nullptr.
  const GgufValue* Find(absl::string_view key) const;
};

// Caps that keep a hostile header from allocating without bound.
inline constexpr uint64_t kMaxGgufTensors = 1 << 20;
inline constexpr uint64_t kMaxGgufMetadata = 1 << 20;
// Array elements over all metadata (a vocabulary of 256k tokens fits many
// times); each becomes a GgufValue, so the bytes alone are no bound.
inline constexpr uint64_t kMaxGgufArrayElements = uint64_t{1} << 22;

absl::StatusOr<GgufFile> ParseGguf(absl::string_view bytes);

struct GgufTensorBytes {
  std::string name;
  std::vector<uint64_t> dims;  // innermost first
  GgmlType type = GgmlType::kF32;
  std::string data;            // exactly the bytes dims and type call for
};

// The whole file. INVALID_ARGUMENT for data of the wrong size, a row that is
// not whole blocks, or a repeated name. `alignment` is written as
// general.alignment when it is not 32.
absl::StatusOr<std::string> SerializeGguf(
    const std::vector<std::pair<std::string, GgufValue>>& metadata,
    const std::vector<GgufTensorBytes>& tensors, uint64_t alignment = 32);

}  // namespace retort::models

#endif  // RETORT_MODELS_GGUF_FORMAT_H_
