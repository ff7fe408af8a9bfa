#include "models/checkpoint_file.h"

#include <algorithm>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/torch_status.h"

namespace retort::models {
namespace {

constexpr char kMetaKey[] = "retort_meta";
constexpr char kModelKey[] = "model";
constexpr char kFormat[] = "retort-checkpoint";
constexpr int kVersion = 1;
// LibTorch's archive reader does not verify tensor records, so every file
// ends with this magic and the sha256 (hex) of the archive bytes before it.
constexpr absl::string_view kTrailerMagic = "RETORT-SHA256:";
constexpr size_t kTrailerSize = 14 + 64;

// Checks the trailer and returns the archive bytes it covers.
absl::StatusOr<absl::string_view> VerifiedArchive(const std::string& path,
                                                  const std::string& bytes) {
  if (bytes.size() < kTrailerSize ||
      absl::string_view(bytes).substr(bytes.size() - kTrailerSize, kTrailerMagic.size()) !=
          kTrailerMagic) {
    return absl::DataLossError(
        absl::StrCat(path,
                     " is not a readable checkpoint (truncated, or not written by retort): its "
                     "integrity trailer is missing"));
  }
  absl::string_view archive(bytes.data(), bytes.size() - kTrailerSize);
  absl::string_view recorded =
      absl::string_view(bytes).substr(bytes.size() - kTrailerSize + kTrailerMagic.size());
  if (Sha256Hex(archive) != recorded) {
    return absl::DataLossError(
        absl::StrCat(path,
                     " is not a readable checkpoint (corrupt): its contents do not match the "
                     "sha256 recorded when it was written"));
  }
  return archive;
}

struct OpenedArchive {
  torch::serialize::InputArchive archive;
  nlohmann::json meta;
};

absl::Status OpenArchive(const std::string& path, OpenedArchive& opened) {
  absl::StatusOr<std::string> bytes = ReadFile(path);
  if (!bytes.ok()) {
    if (absl::IsNotFound(bytes.status())) {
      return absl::NotFoundError(absl::StrCat("checkpoint ", path, " does not exist"));
    }
    return bytes.status();
  }
  RETORT_ASSIGN_OR_RETURN(absl::string_view archive, VerifiedArchive(path, *bytes));
  absl::Status loaded =
      TorchCall("", [&] { opened.archive.load_from(archive.data(), archive.size()); });
  if (!loaded.ok()) {
    return absl::DataLossError(absl::StrCat(
        path, " is not a readable checkpoint (truncated or corrupt): ", loaded.message()));
  }
  c10::IValue meta_value;
  bool has_meta = false;
  absl::Status read = TorchCall("", [&] {
    has_meta = opened.archive.try_read(kMetaKey, meta_value) && meta_value.isString();
  });
  if (!read.ok() || !has_meta) {
    return absl::DataLossError(
        absl::StrCat(path, " has no Retort metadata; it was not written by retort"));
  }
  opened.meta = nlohmann::json::parse(meta_value.toStringRef(), nullptr, false);
  if (!opened.meta.is_object() || opened.meta.value("format", "") != kFormat) {
    return absl::DataLossError(absl::StrCat(path, " has malformed Retort metadata"));
  }
  if (opened.meta.value("version", 0) != kVersion) {
    return absl::FailedPreconditionError(absl::StrCat(path, " is checkpoint format version ",
                                                      opened.meta.value("version", 0),
                                                      "; this build reads version ", kVersion));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelSpec> SpecOf(const std::string& path, const OpenedArchive& opened) {
  absl::StatusOr<ModelSpec> spec =
      ModelSpec::FromJson(opened.meta.value("model", nlohmann::json()));
  if (!spec.ok()) {
    return absl::DataLossError(absl::StrCat(path, ": ", spec.status().message()));
  }
  return spec;
}

absl::Status LoadModel(const std::string& path, OpenedArchive& opened, torch::nn::Module& model) {
  absl::Status status = TorchCall("", [&] {
    torch::serialize::InputArchive model_archive;
    opened.archive.read(kModelKey, model_archive);
    model.load(model_archive);
  });
  if (!status.ok()) {
    return absl::DataLossError(
        absl::StrCat(path, ": cannot load model weights: ", status.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteCheckpoint(const std::string& path, Classifier& model, nlohmann::json meta,
                             const ArchiveWriter& write_extra) {
  return WriteModuleCheckpoint(path, model, model.spec().ToJson(), std::move(meta), write_extra);
}

absl::Status WriteModuleCheckpoint(const std::string& path, torch::nn::Module& model,
                                   const nlohmann::json& model_json, nlohmann::json meta,
                                   const ArchiveWriter& write_extra) {
  if (!meta.is_object()) meta = nlohmann::json::object();
  meta["format"] = kFormat;
  meta["version"] = kVersion;
  meta["model"] = model_json;
  absl::StatusOr<std::string> bytes = TorchCall("serialising checkpoint", [&] {
    torch::serialize::OutputArchive archive;
    archive.write(kMetaKey, c10::IValue(meta.dump()));
    torch::serialize::OutputArchive model_archive;
    model.save(model_archive);
    archive.write(kModelKey, model_archive);
    if (write_extra) write_extra(archive);
    std::ostringstream out;
    archive.save_to(out);
    return out.str();
  });
  if (!bytes.ok()) return bytes.status();
  std::string trailer = absl::StrCat(kTrailerMagic, Sha256Hex(*bytes));
  bytes->append(trailer);
  return WriteFileAtomically(path, *bytes);
}

absl::StatusOr<LoadedCheckpoint> ReadCheckpoint(const std::string& path) {
  OpenedArchive opened;
  RETORT_RETURN_IF_ERROR(OpenArchive(path, opened));
  RETORT_ASSIGN_OR_RETURN(ModelSpec spec, SpecOf(path, opened));
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<Classifier> model, CreateClassifier(spec));
  RETORT_RETURN_IF_ERROR(LoadModel(path, opened, *model));
  return LoadedCheckpoint{std::move(model), std::move(opened.meta)};
}

absl::StatusOr<nlohmann::json> ReadCheckpointInto(const std::string& path, Classifier& model,
                                                  const ArchiveReader& read_extra) {
  OpenedArchive opened;
  RETORT_RETURN_IF_ERROR(OpenArchive(path, opened));
  RETORT_ASSIGN_OR_RETURN(ModelSpec spec, SpecOf(path, opened));
  if (spec != model.spec()) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint ", path, " holds a ", spec.Describe(), " but this run builds a ",
                     model.spec().Describe(),
                     "; use a checkpoint of the same architecture or change "
                     "the model flags"));
  }
  RETORT_RETURN_IF_ERROR(LoadModel(path, opened, model));
  if (read_extra) RETORT_RETURN_IF_ERROR(read_extra(opened.archive));
  return std::move(opened.meta);
}

absl::StatusOr<nlohmann::json> ReadModuleCheckpointInto(const std::string& path,
                                                        torch::nn::Module& model,
                                                        const nlohmann::json& model_json,
                                                        const ArchiveReader& read_extra) {
  OpenedArchive opened;
  RETORT_RETURN_IF_ERROR(OpenArchive(path, opened));
  const nlohmann::json held = opened.meta.value("model", nlohmann::json());
  if (held != model_json) {
    // Classifiers are named as the model flags spell them ("mlp 784-64-10").
    absl::StatusOr<ModelSpec> held_spec = ModelSpec::FromJson(held);
    absl::StatusOr<ModelSpec> built_spec = ModelSpec::FromJson(model_json);
    const bool specs = held_spec.ok() && built_spec.ok();
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", path, " holds ",
        specs ? "a " + held_spec->Describe() : "the model " + held.dump(), " but this run builds ",
        specs ? "a " + built_spec->Describe() : model_json.dump(),
        "; use a checkpoint of the same architecture or change the model flags"));
  }
  RETORT_RETURN_IF_ERROR(LoadModel(path, opened, model));
  if (read_extra) RETORT_RETURN_IF_ERROR(read_extra(opened.archive));
  return std::move(opened.meta);
}

std::string WeightsSha256(const torch::nn::Module& module, bool as_float32) {
  std::map<std::string, torch::Tensor> named;
  for (const auto& item : module.named_parameters()) named[item.key()] = item.value();
  for (const auto& item : module.named_buffers()) named[item.key()] = item.value();
  return NamedTensorsSha256(named, as_float32);
}

std::string NamedTensorsSha256(const std::map<std::string, torch::Tensor>& named, bool as_float32) {
  Sha256 hasher;
  for (const auto& [name, tensor] : named) {
    const torch::Tensor t = tensor.detach().contiguous().cpu();
    const bool convert = as_float32 && t.is_floating_point() && t.scalar_type() != torch::kFloat32;
    hasher.Update(name);
    hasher.Update(absl::StrCat(
        ":", std::string(c10::toString(convert ? torch::kFloat32 : t.scalar_type())), ":"));
    for (int64_t d : t.sizes()) hasher.Update(absl::StrCat(d, ","));
    if (!convert) {
      hasher.Update(absl::string_view(static_cast<const char*>(t.data_ptr()), t.nbytes()));
      continue;
    }
    // In slices, so that hashing a large bf16 tensor never holds its whole
    // float32 copy (a teacher served in bf16 stays near its file size).
    const torch::Tensor flat = t.reshape({-1});
    constexpr int64_t kSlice = int64_t{1} << 22;
    for (int64_t begin = 0; begin < flat.numel(); begin += kSlice) {
      const torch::Tensor part =
          flat.narrow(0, begin, std::min(kSlice, flat.numel() - begin)).to(torch::kFloat32);
      hasher.Update(absl::string_view(static_cast<const char*>(part.data_ptr()), part.nbytes()));
    }
  }
  return hasher.HexDigest();
}

}  // namespace retort::models
