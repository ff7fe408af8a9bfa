#include "models/safetensors_shards.h"

#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace retort::models {
namespace {

namespace fs = std::filesystem;

int64_t Bytes(const torch::Tensor& t) {
  return static_cast<int64_t>(t.numel()) * static_cast<int64_t>(t.element_size());
}

// The index's weight_map, validated: a JSON object of tensor -> shard file
// name, each a plain file name in the directory.
absl::StatusOr<std::map<std::string, std::string>> ReadWeightMap(const std::string& index_path) {
  RETORT_ASSIGN_OR_RETURN(std::string text, ReadFile(index_path));
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object() || !json.contains("weight_map") ||
      !json["weight_map"].is_object()) {
    return absl::DataLossError(
        absl::StrCat(index_path,
                     " is not a safetensors index: a JSON object with a "
                     "\"weight_map\" object of tensor name -> shard file is needed"));
  }
  std::map<std::string, std::string> map;
  for (const auto& [tensor, file] : json["weight_map"].items()) {
    if (!file.is_string()) {
      return absl::DataLossError(
          absl::StrCat(index_path, ": weight_map[\"", tensor, "\"] is not a file name"));
    }
    const std::string name = file.get<std::string>();
    if (name.empty() || name == "." || name == ".." || absl::StrContains(name, "/") ||
        absl::StrContains(name, "\\")) {
      return absl::DataLossError(absl::StrCat(index_path, ": weight_map[\"", tensor, "\"] = \"",
                                              name,
                                              "\" is not a file name in the checkpoint directory"));
    }
    map[tensor] = name;
  }
  if (map.empty()) return absl::DataLossError(absl::StrCat(index_path, ": weight_map is empty"));
  return map;
}

absl::StatusOr<NamedTensors> ReadSharded(const std::string& dir) {
  const std::string index_path = (fs::path(dir) / kSafetensorsIndexFileName).string();
  RETORT_ASSIGN_OR_RETURN(auto weight_map, ReadWeightMap(index_path));
  // Shards in order of first appearance in the sorted map, then by name: the
  // order save_pretrained numbers them in.
  std::set<std::string> shard_names;
  for (const auto& [tensor, shard] : weight_map) shard_names.insert(shard);
  NamedTensors out;
  bool first = true;
  for (const std::string& shard : shard_names) {
    const std::string path = (fs::path(dir) / shard).string();
    if (!PathExists(path)) {
      std::string example;
      for (const auto& [tensor, s] : weight_map) {
        if (s == shard) {
          example = tensor;
          break;
        }
      }
      return absl::NotFoundError(
          absl::StrCat(path, " does not exist, but ", kSafetensorsIndexFileName, " maps tensor ",
                       example, " (and maybe others) to it; copy the whole checkpoint directory"));
    }
    RETORT_ASSIGN_OR_RETURN(NamedTensors part, MapSafetensors(path));
    std::set<std::string> held;
    for (auto& [name, tensor] : part.tensors) {
      auto it = weight_map.find(name);
      if (it == weight_map.end() || it->second != shard) {
        return absl::DataLossError(
            absl::StrCat(path, " holds tensor ", name, ", which ", index_path,
                         it == weight_map.end() ? " does not list" : " maps to " + it->second,
                         "; the index does not describe these shards"));
      }
      held.insert(name);
      out.tensors.emplace_back(name, std::move(tensor));
    }
    for (const auto& [tensor, s] : weight_map) {
      if (s == shard && held.count(tensor) == 0) {
        return absl::DataLossError(absl::StrCat(index_path, " maps tensor ", tensor, " to ", shard,
                                                ", which has no such tensor"));
      }
    }
    if (first) out.metadata = part.metadata;
    first = false;
  }
  return out;
}

}  // namespace

bool HasSafetensorsWeights(const std::string& dir) {
  return PathExists((fs::path(dir) / kSafetensorsFileName).string()) ||
         PathExists((fs::path(dir) / kSafetensorsIndexFileName).string());
}

absl::StatusOr<NamedTensors> ReadSafetensorsWeights(const std::string& dir) {
  const std::string single = (fs::path(dir) / kSafetensorsFileName).string();
  if (PathExists(single)) return MapSafetensors(single);
  if (PathExists((fs::path(dir) / kSafetensorsIndexFileName).string())) return ReadSharded(dir);
  return absl::NotFoundError(
      absl::StrCat(dir, " has neither ", kSafetensorsFileName, " nor ", kSafetensorsIndexFileName));
}

absl::Status WriteSafetensorsWeights(const std::string& dir, const NamedTensors& tensors,
                                     int64_t max_shard_bytes) {
  if (max_shard_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the shard size must be >= 0 bytes (0: one file), not ", max_shard_bytes));
  }
  RETORT_RETURN_IF_ERROR(MakeDirs(dir));
  // Stale files of an earlier save: shards, the index, the single file.
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (absl::StartsWith(name, "model-") && absl::EndsWith(name, ".safetensors")) {
      fs::remove(e.path(), ec);
    }
  }
  fs::remove(fs::path(dir) / kSafetensorsIndexFileName, ec);
  int64_t total = 0;
  for (const auto& [name, t] : tensors.tensors) total += Bytes(t);
  if (max_shard_bytes == 0 || total <= max_shard_bytes) {
    return WriteSafetensors((fs::path(dir) / kSafetensorsFileName).string(), tensors);
  }
  fs::remove(fs::path(dir) / kSafetensorsFileName, ec);
  std::vector<NamedTensors> shards;
  int64_t in_shard = 0;
  for (const auto& [name, t] : tensors.tensors) {
    if (shards.empty() || (in_shard > 0 && in_shard + Bytes(t) > max_shard_bytes)) {
      shards.emplace_back();
      shards.back().metadata = tensors.metadata;
      in_shard = 0;
    }
    shards.back().tensors.emplace_back(name, t);
    in_shard += Bytes(t);
  }
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file =
        absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards.size());
    RETORT_RETURN_IF_ERROR(WriteSafetensors((fs::path(dir) / file).string(), shards[i]));
    for (const auto& [name, t] : shards[i].tensors) weight_map[name] = file;
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  // The index last: with it, every shard it names is complete.
  return WriteFileAtomically((fs::path(dir) / kSafetensorsIndexFileName).string(),
                             index.dump(2) + "\n");
}

absl::StatusOr<int64_t> SafetensorsWeightsBytes(const std::string& dir) {
  const std::string single = (fs::path(dir) / kSafetensorsFileName).string();
  if (PathExists(single)) return FileSize(single);
  const std::string index_path = (fs::path(dir) / kSafetensorsIndexFileName).string();
  RETORT_ASSIGN_OR_RETURN(auto weight_map, ReadWeightMap(index_path));
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : weight_map) shards.insert(shard);
  int64_t bytes = 0;
  for (const std::string& shard : shards) {
    RETORT_ASSIGN_OR_RETURN(int64_t size, FileSize((fs::path(dir) / shard).string()));
    bytes += size;
  }
  return bytes;
}

}  // namespace retort::models
