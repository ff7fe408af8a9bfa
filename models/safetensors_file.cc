#include "models/safetensors_file.h"

#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/mapped_file.h"
#include "common/status_macros.h"
#include "models/safetensors_format.h"

namespace retort::models {
namespace {

struct DtypePair {
  torch::ScalarType torch_type;
  SafetensorsDtype file_type;
};

constexpr DtypePair kPairs[] = {
    {torch::kFloat64, SafetensorsDtype::kF64}, {torch::kFloat32, SafetensorsDtype::kF32},
    {torch::kFloat16, SafetensorsDtype::kF16}, {torch::kBFloat16, SafetensorsDtype::kBF16},
    {torch::kInt64, SafetensorsDtype::kI64},   {torch::kInt32, SafetensorsDtype::kI32},
    {torch::kInt16, SafetensorsDtype::kI16},   {torch::kInt8, SafetensorsDtype::kI8},
    {torch::kUInt8, SafetensorsDtype::kU8},    {torch::kBool, SafetensorsDtype::kBool},
};

absl::StatusOr<SafetensorsDtype> FileType(torch::ScalarType type) {
  for (const DtypePair& p : kPairs) {
    if (p.torch_type == type) return p.file_type;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors has no dtype for ", c10::toString(type)));
}

torch::ScalarType TorchType(SafetensorsDtype type) {
  for (const DtypePair& p : kPairs) {
    if (p.file_type == type) return p.torch_type;
  }
  return torch::kFloat32;
}

// DATA_LOSS unless every byte of a BOOL tensor is 0 or 1.
absl::Status CheckBool(const std::string& path, const SafetensorsEntry& e, const torch::Tensor& t) {
  if (e.dtype == SafetensorsDtype::kBool &&
      !torch::logical_or(t.view(torch::kUInt8) == 0, t.view(torch::kUInt8) == 1)
           .all()
           .item<bool>()) {
    return absl::DataLossError(
        absl::StrCat(path, ": tensor '", e.name, "' is BOOL but holds bytes other than 0 and 1"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<torch::Tensor> NamedTensors::Get(const std::string& name) const {
  for (const auto& [n, t] : tensors) {
    if (n == name) return t;
  }
  return absl::NotFoundError(absl::StrCat("no tensor named '", name, "'"));
}

absl::Status WriteSafetensors(const std::string& path, const NamedTensors& named) {
  std::vector<SafetensorsEntry> entries;
  std::vector<torch::Tensor> contiguous;
  for (const auto& [name, tensor] : named.tensors) {
    SafetensorsEntry entry;
    entry.name = name;
    RETORT_ASSIGN_OR_RETURN(entry.dtype, FileType(tensor.scalar_type()));
    entry.shape = tensor.sizes().vec();
    entries.push_back(std::move(entry));
    contiguous.push_back(tensor.detach().to(torch::kCPU).contiguous());
  }
  RETORT_ASSIGN_OR_RETURN(std::string bytes, SerializeSafetensorsHeader(entries, named.metadata));
  for (size_t i = 0; i < entries.size(); ++i) {
    const size_t n = static_cast<size_t>(entries[i].end - entries[i].begin);
    if (n > 0) bytes.append(static_cast<const char*>(contiguous[i].data_ptr()), n);
  }
  return WriteFileAtomically(path, bytes);
}

absl::StatusOr<NamedTensors> ReadSafetensors(const std::string& path) {
  RETORT_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  absl::StatusOr<SafetensorsIndex> index = ParseSafetensorsHeader(bytes, bytes.size());
  if (!index.ok()) {
    return absl::Status(index.status().code(), absl::StrCat(path, ": ", index.status().message()));
  }
  NamedTensors out;
  out.metadata = index->metadata;
  for (const SafetensorsEntry& e : index->tensors) {
    torch::Tensor t = torch::empty(e.shape, torch::TensorOptions().dtype(TorchType(e.dtype)));
    if (e.end > e.begin) {
      std::memcpy(t.data_ptr(), bytes.data() + index->data_start + e.begin,
                  static_cast<size_t>(e.end - e.begin));
    }
    RETORT_RETURN_IF_ERROR(CheckBool(path, e, t));
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

absl::StatusOr<NamedTensors> MapSafetensors(const std::string& path) {
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::Map(path));
  absl::StatusOr<SafetensorsIndex> index = ParseSafetensorsHeader(file->view(), file->size());
  if (!index.ok()) {
    return absl::Status(index.status().code(), absl::StrCat(path, ": ", index.status().message()));
  }
  NamedTensors out;
  out.metadata = index->metadata;
  for (const SafetensorsEntry& e : index->tensors) {
    const torch::TensorOptions options = torch::TensorOptions().dtype(TorchType(e.dtype));
    char* data = file->data() + index->data_start + e.begin;
    torch::Tensor t;
    if (e.end == e.begin) {
      t = torch::empty(e.shape, options);
    } else if (reinterpret_cast<uintptr_t>(data) % SafetensorsDtypeSize(e.dtype) != 0) {
      t = torch::empty(e.shape, options);
      std::memcpy(t.data_ptr(), data, static_cast<size_t>(e.end - e.begin));
    } else {
      t = torch::from_blob(
          data, e.shape, [file](void*) {}, options);
    }
    RETORT_RETURN_IF_ERROR(CheckBool(path, e, t));
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

}  // namespace retort::models
