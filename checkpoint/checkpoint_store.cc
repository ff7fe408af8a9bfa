#include "checkpoint/checkpoint_store.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace retort::checkpoint {
namespace {

namespace fs = std::filesystem;

constexpr char kManifest[] = "MANIFEST.json";
constexpr char kPrefix[] = "ckpt-";
constexpr char kStagingPrefix[] = ".staging-";
constexpr char kFormat[] = "retort-checkpoint-manifest";

std::string StepName(int64_t step) { return absl::StrFormat("%012d", step); }

absl::Status FsError(const std::error_code& error, absl::string_view what,
                     const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", error.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CheckpointStore>> CheckpointStore::Create(Options options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("checkpoint directory is empty");
  if (options.keep_last < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "keep at least 2 checkpoints (a crash while writing one must leave another), got ",
        options.keep_last));
  }
  RETORT_RETURN_IF_ERROR(MakeDirs(options.dir));
  return std::unique_ptr<CheckpointStore>(new CheckpointStore(std::move(options)));
}

std::string CheckpointStore::StepDir(int64_t step) const {
  return (fs::path(options_.dir) / (kPrefix + StepName(step))).string();
}

absl::StatusOr<std::unique_ptr<CheckpointStore::Pending>> CheckpointStore::Begin(int64_t step) {
  if (step < 0) return absl::InvalidArgumentError(absl::StrCat("negative step ", step));
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(options_.dir, error)) {
    if (absl::StartsWith(entry.path().filename().string(), kStagingPrefix)) {
      fs::remove_all(entry.path(), error);
      if (error) return FsError(error, "cannot remove", entry.path().string());
    }
  }
  if (error) return FsError(error, "cannot list", options_.dir);
  const std::string staging = (fs::path(options_.dir) / (kStagingPrefix + StepName(step))).string();
  RETORT_RETURN_IF_ERROR(MakeDirs(staging));
  return std::unique_ptr<Pending>(new Pending(this, step, staging));
}

std::string CheckpointStore::StagingPath(int64_t step, const std::string& name) const {
  return (fs::path(options_.dir) / (kStagingPrefix + StepName(step)) / name).string();
}

std::string CheckpointStore::Pending::Path(const std::string& name) const {
  return (fs::path(staging_) / name).string();
}

absl::Status CheckpointStore::Pending::Commit(const nlohmann::json& metadata) {
  if (committed_) return absl::FailedPreconditionError("checkpoint already committed");
  nlohmann::json files = nlohmann::json::object();
  std::error_code error;
  std::vector<fs::path> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(staging_, error)) {
    names.push_back(entry.path());
  }
  if (error) return FsError(error, "cannot list", staging_);
  std::sort(names.begin(), names.end());
  for (const fs::path& path : names) {
    if (!fs::is_regular_file(path)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path.string(), " is not a regular file; checkpoints hold files only"));
    }
    RETORT_RETURN_IF_ERROR(SyncPath(path.string()));
    RETORT_ASSIGN_OR_RETURN(int64_t size, FileSize(path.string()));
    RETORT_ASSIGN_OR_RETURN(std::string sha, FileSha256Hex(path.string()));
    files[path.filename().string()] = {{"bytes", size}, {"sha256", sha}};
  }
  nlohmann::json manifest = {{"format", kFormat},
                             {"version", 1},
                             {"step", step_},
                             {"files", files},
                             {"metadata", metadata}};
  RETORT_RETURN_IF_ERROR(WriteFileAtomically(Path(kManifest), manifest.dump(2) + "\n"));
  const std::string final_dir = store_->StepDir(step_);
  fs::remove_all(final_dir, error);  // a checkpoint of the same step, rewritten
  if (error) return FsError(error, "cannot replace", final_dir);
  fs::rename(staging_, final_dir, error);
  if (error) return FsError(error, "cannot rename", staging_);
  RETORT_RETURN_IF_ERROR(SyncPath(store_->options_.dir));
  committed_ = true;
  return store_->Prune(step_);
}

absl::StatusOr<CheckpointStore::Checkpoint> CheckpointStore::Verify(
    const std::string& checkpoint_dir) {
  const std::string manifest_path = (fs::path(checkpoint_dir) / kManifest).string();
  absl::StatusOr<std::string> text = ReadFile(manifest_path);
  if (!text.ok()) {
    return absl::DataLossError(
        absl::StrCat(checkpoint_dir, " has no ", kManifest, " (interrupted while being written?)"));
  }
  nlohmann::json manifest = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!manifest.is_object() || manifest.value("format", "") != kFormat ||
      !manifest.contains("step") || !manifest["step"].is_number_integer() ||
      !manifest.contains("files") || !manifest["files"].is_object()) {
    return absl::DataLossError(absl::StrCat(manifest_path, " is not a valid manifest"));
  }
  for (const auto& [name, entry] : manifest["files"].items()) {
    const std::string path = (fs::path(checkpoint_dir) / name).string();
    if (!entry.is_object() || !entry.contains("bytes") || !entry.contains("sha256")) {
      return absl::DataLossError(absl::StrCat(manifest_path, ": bad entry for ", name));
    }
    absl::StatusOr<int64_t> size = FileSize(path);
    if (!size.ok()) return absl::DataLossError(absl::StrCat(path, " is missing"));
    if (*size != entry["bytes"].get<int64_t>()) {
      return absl::DataLossError(absl::StrCat(path, " has ", *size, " bytes, the manifest says ",
                                              entry["bytes"].get<int64_t>()));
    }
    RETORT_ASSIGN_OR_RETURN(std::string sha, FileSha256Hex(path));
    if (sha != entry["sha256"].get<std::string>()) {
      return absl::DataLossError(absl::StrCat(path, " does not match its sha256 in the manifest"));
    }
  }
  Checkpoint checkpoint;
  checkpoint.step = manifest["step"].get<int64_t>();
  checkpoint.dir = checkpoint_dir;
  checkpoint.metadata = manifest.value("metadata", nlohmann::json::object());
  return checkpoint;
}

absl::StatusOr<std::vector<int64_t>> CheckpointStore::ListedSteps() const {
  std::vector<int64_t> steps;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(options_.dir, error)) {
    const std::string name = entry.path().filename().string();
    int64_t step = 0;
    if (absl::StartsWith(name, kPrefix) && absl::SimpleAtoi(name.substr(5), &step)) {
      steps.push_back(step);
    }
  }
  if (error) return FsError(error, "cannot list", options_.dir);
  std::sort(steps.rbegin(), steps.rend());
  return steps;
}

absl::StatusOr<std::optional<CheckpointStore::Checkpoint>> CheckpointStore::Latest(
    std::vector<std::string>* warnings) const {
  RETORT_ASSIGN_OR_RETURN(std::vector<int64_t> steps, ListedSteps());
  for (int64_t step : steps) {
    absl::StatusOr<Checkpoint> checkpoint = Verify(StepDir(step));
    if (checkpoint.ok()) return std::optional<Checkpoint>(*std::move(checkpoint));
    if (warnings != nullptr) {
      warnings->push_back(
          absl::StrCat("skipping checkpoint of step ", step, ": ", checkpoint.status().message()));
    }
  }
  return std::optional<Checkpoint>();
}

absl::StatusOr<std::vector<int64_t>> CheckpointStore::CompleteSteps() const {
  RETORT_ASSIGN_OR_RETURN(std::vector<int64_t> steps, ListedSteps());
  std::vector<int64_t> complete;
  for (int64_t step : steps) {
    if (Verify(StepDir(step)).ok()) complete.push_back(step);
  }
  std::reverse(complete.begin(), complete.end());
  return complete;
}

absl::Status CheckpointStore::Prune(int64_t committed_step) {
  RETORT_ASSIGN_OR_RETURN(std::vector<int64_t> steps, ListedSteps());
  // Newest first; keep the newest keep_last that have a manifest (hashing
  // every file again on each commit would cost more than the write), and
  // anything between them (a directory without one is evidence, left for a
  // human until it ages out). A checkpoint of a step after the one just
  // committed that fails verification is what a run resumed past (it
  // resumed from an older one, or afresh, with a warning naming it): it
  // goes. Counted as the newest, such checkpoints made this prune delete the
  // checkpoint just written and the older complete ones (found by the chaos
  // soak). Only these few are hashed again.
  int kept = 0;
  for (int64_t step : steps) {
    const bool abandoned = step > committed_step && !Verify(StepDir(step)).ok();
    if (abandoned || kept >= options_.keep_last) {
      std::error_code error;
      fs::remove_all(StepDir(step), error);
      if (error) return FsError(error, "cannot remove", StepDir(step));
      continue;
    }
    if (PathExists((fs::path(StepDir(step)) / kManifest).string())) ++kept;
  }
  return SyncPath(options_.dir);
}

}  // namespace retort::checkpoint
