// Checkpoint files: one LibTorch archive holding a model's parameters and
// buffers, its ModelSpec, free-form JSON metadata, and optional extra entries
// (the trainer adds optimizer state). Written atomically; a reader can always
// tell what architecture a file holds before loading a tensor.
//
// Archive layout:
//   "retort_meta"  string: JSON {"format": "retort-checkpoint", "version": 1,
//                  "model": ModelSpec JSON, ...caller metadata}
//   "model"        the module's parameters and buffers
//   ...            caller-defined entries
// followed by a trailer, "RETORT-SHA256:" and the hex sha256 of the archive
// bytes, checked before anything is read: a truncated or corrupted file is
// DATA_LOSS, never silently different weights.
#ifndef RETORT_MODELS_CHECKPOINT_FILE_H_
#define RETORT_MODELS_CHECKPOINT_FILE_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/classifier.h"

namespace retort::models {

using ArchiveWriter = std::function<void(torch::serialize::OutputArchive&)>;
using ArchiveReader = std::function<absl::Status(torch::serialize::InputArchive&)>;

// Writes `model` with `meta` (an object; "format", "version" and "model" are
// set here) to `path` atomically. `write_extra` may add entries.
absl::Status WriteCheckpoint(const std::string& path, Classifier& model, nlohmann::json meta,
                             const ArchiveWriter& write_extra = {});

// The same for any module: `model_json` describes its architecture and is
// stored as the metadata's "model".
absl::Status WriteModuleCheckpoint(const std::string& path, torch::nn::Module& model,
                                   const nlohmann::json& model_json, nlohmann::json meta,
                                   const ArchiveWriter& write_extra = {});

struct LoadedCheckpoint {
  std::shared_ptr<Classifier> model;
  nlohmann::json meta;
};

// Reads a checkpoint and builds the model it describes.
absl::StatusOr<LoadedCheckpoint> ReadCheckpoint(const std::string& path);

// Reads a checkpoint into an existing `model`. FAILED_PRECONDITION, naming
// both architectures, when the file holds a different one. `read_extra` reads
// caller-defined entries. Returns the metadata.
absl::StatusOr<nlohmann::json> ReadCheckpointInto(const std::string& path, Classifier& model,
                                                  const ArchiveReader& read_extra = {});

// Reads a checkpoint written by WriteModuleCheckpoint into `model`;
// FAILED_PRECONDITION when its "model" is not `model_json`.
absl::StatusOr<nlohmann::json> ReadModuleCheckpointInto(const std::string& path,
                                                        torch::nn::Module& model,
                                                        const nlohmann::json& model_json,
                                                        const ArchiveReader& read_extra = {});

// sha256 over the module's parameters and buffers (name, shape, dtype and
// bytes, in name order): the weights part of a teacher fingerprint. With
// `as_float32`, floating-point tensors are hashed as their float32 values
// (one at a time), so bfloat16 or float16 weights give the digest their
// exact float32 load gives.
std::string WeightsSha256(const torch::nn::Module& module, bool as_float32 = false);

// The same digest over any set of named tensors (e.g. a TorchScript module's
// parameters and buffers).
std::string NamedTensorsSha256(const std::map<std::string, torch::Tensor>& named,
                               bool as_float32 = false);

}  // namespace retort::models

#endif  // RETORT_MODELS_CHECKPOINT_FILE_H_
