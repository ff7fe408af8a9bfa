// Reading and writing LibTorch tensors as safetensors files (the format in
// models/safetensors_format.h), the weight format Hugging Face tools load.
//
// Writes are atomic (a temporary file renamed into place). Reads validate the
// whole header first (ParseSafetensorsHeader) and reject hostile files with
// DATA_LOSS naming the file and the problem; tensors come back as CPU
// tensors owning their memory (or, from MapSafetensors, viewing the mapped
// file), in the file's data order. Little-endian hosts
// only, as the format.
#ifndef RETORT_MODELS_SAFETENSORS_FILE_H_
#define RETORT_MODELS_SAFETENSORS_FILE_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"

namespace retort::models {

struct NamedTensors {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  std::map<std::string, std::string> metadata;

  // The tensor called `name`, or NOT_FOUND.
  absl::StatusOr<torch::Tensor> Get(const std::string& name) const;
};

// INVALID_ARGUMENT for a dtype safetensors has no name for (complex, ...)
// or a repeated name.
absl::Status WriteSafetensors(const std::string& path, const NamedTensors& tensors);

absl::StatusOr<NamedTensors> ReadSafetensors(const std::string& path);

// As ReadSafetensors, but the tensors view the file, memory-mapped
// copy-on-write (common/mapped_file.h), in the file's dtype: nothing is read
// until used, and the mapping lives as long as any of its tensors. A tensor
// whose offset is not a multiple of its element size is copied instead.
absl::StatusOr<NamedTensors> MapSafetensors(const std::string& path);

}  // namespace retort::models

#endif  // RETORT_MODELS_SAFETENSORS_FILE_H_
