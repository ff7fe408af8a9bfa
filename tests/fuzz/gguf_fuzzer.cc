// libFuzzer target: the GGUF parser (models/gguf_format.h) on arbitrary bytes,
// as a whole file. It must return an error or a file whose tensors lie,
// aligned and without overlap, inside the data region; never crash, read out
// of bounds or allocate without bound. Also fuzzes the SentencePiece model
// reader the GGUF exporter uses (data/sentencepiece_model.h).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "data/sentencepiece_model.h"
#include "models/gguf_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)retort::data::ParseSentencePieceModel(bytes, "fuzz");
  absl::StatusOr<retort::models::GgufFile> file = retort::models::ParseGguf(bytes);
  if (!file.ok()) return 0;
  if (file->data_start > size || file->data_start % file->alignment != 0) std::abort();
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const auto& t : file->tensors) {
    if (t.offset % file->alignment != 0) std::abort();
    if (file->data_start + t.offset + t.bytes > size) std::abort();
    spans.emplace_back(t.offset, t.offset + t.bytes);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].first < spans[i - 1].second) std::abort();
  }
  return 0;
}
