// libFuzzer target: the safetensors header parser (models/safetensors_format.h)
// on arbitrary bytes, as a whole file. It must return an error or an index
// whose tensors tile the data region, never crash or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include "absl/strings/string_view.h"

#include "models/safetensors_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<retort::models::SafetensorsIndex> index =
      retort::models::ParseSafetensorsHeader(bytes, size);
  if (!index.ok()) return 0;
  uint64_t next = 0;
  for (const retort::models::SafetensorsEntry& t : index->tensors) {
    if (t.begin != next || t.end < t.begin) std::abort();
    next = t.end;
  }
  if (index->data_start + next != size) std::abort();
  return 0;
}
