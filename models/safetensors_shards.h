// The weights of a Hugging Face checkpoint directory, whole or sharded:
//
//   <dir>/model.safetensors                  one file, or
//   <dir>/model.safetensors.index.json       {"metadata": {"total_size": N},
//                                             "weight_map": {tensor: shard file}}
//   <dir>/model-00001-of-0000K.safetensors   the shards it names
//
// as transformers' save_pretrained writes them (max_shard_size) and
// from_pretrained reads them. Reading memory-maps every file
// (MapSafetensors) and trusts nothing in the index: a shard it names that is
// missing, a tensor it maps to a shard that lacks it, a tensor a shard holds
// that the index does not map there, or a shard name with a path in it is
// refused, naming the tensor and the file.
#ifndef RETORT_MODELS_SAFETENSORS_SHARDS_H_
#define RETORT_MODELS_SAFETENSORS_SHARDS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/safetensors_file.h"

namespace retort::models {

inline constexpr char kSafetensorsFileName[] = "model.safetensors";
inline constexpr char kSafetensorsIndexFileName[] = "model.safetensors.index.json";

// True when `dir` holds model.safetensors or model.safetensors.index.json.
bool HasSafetensorsWeights(const std::string& dir);

// Every tensor of the directory's weights, memory-mapped, in shard order
// then data order; the metadata is the first file's. NOT_FOUND when neither
// layout is there (or a shard is missing); DATA_LOSS for a lying or
// malformed index, naming it.
absl::StatusOr<NamedTensors> ReadSafetensorsWeights(const std::string& dir);

// Writes `tensors` in the given order: model.safetensors when their bytes
// fit in `max_shard_bytes` (0: no limit), else shards of at most that many
// bytes each (a tensor larger than the limit alone in its shard) and the
// index, as save_pretrained does. Files of the other layout left by an
// earlier save are removed. INVALID_ARGUMENT for a negative limit.
absl::Status WriteSafetensorsWeights(const std::string& dir, const NamedTensors& tensors,
                                     int64_t max_shard_bytes = 0);

// The bytes of every weights file of the directory (either layout).
absl::StatusOr<int64_t> SafetensorsWeightsBytes(const std::string& dir);

}  // namespace retort::models

#endif  // RETORT_MODELS_SAFETENSORS_SHARDS_H_
