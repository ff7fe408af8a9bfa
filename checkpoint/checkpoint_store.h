// CheckpointStore: a directory of numbered checkpoints, each committed
// atomically, so a run killed at any moment resumes from a complete one.
//
//   <dir>/ckpt-000000001200/     the checkpoint of step 1200
//       <data files>             written by the caller, fsynced at commit
//       MANIFEST.json            written last: step, metadata, and each
//                                file's size and sha256
//   <dir>/.staging-000000001300/ a checkpoint being written; never read,
//                                removed by the next Begin
//
// Commit fsyncs every data file, writes the manifest (temporary file, fsync,
// rename), renames the staging directory to ckpt-<step> and fsyncs <dir>. A
// crash before the last rename leaves only staging debris; after it, a
// complete checkpoint. Latest() returns the newest checkpoint whose manifest
// parses and whose files match it, with a warning for each newer one it
// skipped (naming what was wrong), and Commit keeps the newest `keep_last`,
// having removed checkpoints of later steps that fail verification (a run
// resumed past them, from an older checkpoint or afresh).
//
// Groundwork for the pool issue's exact resume: the trainer does not use it
// yet. Not thread-safe; one writer per directory.
#ifndef RETORT_CHECKPOINT_CHECKPOINT_STORE_H_
#define RETORT_CHECKPOINT_CHECKPOINT_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace retort::checkpoint {

class CheckpointStore {
 public:
  struct Options {
    std::string dir;
    int keep_last = 3;  // at least 2
  };

  struct Checkpoint {
    int64_t step = 0;
    std::string dir;          // holds the data files
    nlohmann::json metadata;  // as given to Commit
  };

  // A checkpoint being written: write files to Path(name), then Commit.
  class Pending {
   public:
    // Where to write the data file `name` (a plain file name).
    std::string Path(const std::string& name) const;
    // Seals the checkpoint as described above. FAILED_PRECONDITION if called
    // twice; errors name the file that could not be synced or renamed.
    absl::Status Commit(const nlohmann::json& metadata);

   private:
    friend class CheckpointStore;
    Pending(CheckpointStore* store, int64_t step, std::string staging)
        : store_(store), step_(step), staging_(std::move(staging)) {}
    CheckpointStore* store_;
    int64_t step_;
    std::string staging_;
    bool committed_ = false;
  };

  static absl::StatusOr<std::unique_ptr<CheckpointStore>> Create(Options options);

  // Starts checkpoint `step` (>= 0) in a fresh staging directory, removing
  // staging debris of earlier, interrupted writers.
  absl::StatusOr<std::unique_ptr<Pending>> Begin(int64_t step);

  // The newest complete checkpoint, or nullopt when there is none. Each
  // newer, incomplete or corrupt one adds a line to `warnings`.
  absl::StatusOr<std::optional<Checkpoint>> Latest(std::vector<std::string>* warnings) const;

  // Where checkpoint `step`'s data file `name` goes while it is written, for
  // other writers (trainer ranks) of a checkpoint one writer began.
  std::string StagingPath(int64_t step, const std::string& name) const;

  // Steps of the checkpoints that verify, oldest first.
  absl::StatusOr<std::vector<int64_t>> CompleteSteps() const;

  // Checks one checkpoint directory against its manifest.
  static absl::StatusOr<Checkpoint> Verify(const std::string& checkpoint_dir);

 private:
  explicit CheckpointStore(Options options) : options_(std::move(options)) {}
  // Steps named by ckpt-* directories, newest first (not verified).
  absl::StatusOr<std::vector<int64_t>> ListedSteps() const;
  std::string StepDir(int64_t step) const;
  // Keeps the newest keep_last checkpoints; first removes checkpoints of
  // steps after `committed_step` that fail verification (see Commit).
  absl::Status Prune(int64_t committed_step);

  const Options options_;
};

}  // namespace retort::checkpoint

#endif  // RETORT_CHECKPOINT_CHECKPOINT_STORE_H_
