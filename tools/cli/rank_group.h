// RankGroup: W data-parallel ranks of one retort command started as child
// processes on this machine, with the environment contract torchrun gives
// its workers (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE). `retort launch` and `retort bench ddp` start ranks
// through it.
//
// Unlike torchrun's agent it does not tear the group down when one rank
// fails: each rank notices a dead or frozen peer itself (within its
// --dist_timeout) and exits with an error, as it must under Slurm or a
// Kubernetes Indexed Job, where no agent watches the group.
//
// Rank 0 writes to this process's stderr (its progress lines); rank r > 0
// to <log_dir>/rank-<r>.log. The children die with this process.
#ifndef RETORT_TOOLS_CLI_RANK_GROUP_H_
#define RETORT_TOOLS_CLI_RANK_GROUP_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/subprocess.h"

namespace retort::cli {

class RankGroup {
 public:
  struct Options {
    int world_size = 2;
    // The command each rank runs after the retort binary, e.g. {"train", "--epochs=3"}.
    std::vector<std::string> args;
    std::string log_dir;
    int master_port = 0;  // 0: a free port on 127.0.0.1
    // Extra variables for every rank (e.g. OMP_NUM_THREADS).
    std::vector<std::pair<std::string, std::string>> env;
    bool rank0_to_stderr = true;  // false: rank 0 logs to <log_dir>/rank-0.log too
  };

  // INVALID_ARGUMENT for a world size outside [1, 256]; errors of starting a
  // child name it.
  static absl::StatusOr<std::unique_ptr<RankGroup>> Start(const Options& options);

  // Waits (up to `timeout`) for every rank and returns their exit statuses
  // in rank order (Subprocess::Wait's numbering). DEADLINE_EXCEEDED if one
  // is still running then.
  absl::StatusOr<std::vector<int>> Wait(absl::Duration timeout);

  int world_size() const { return static_cast<int>(ranks_.size()); }
  int master_port() const { return master_port_; }
  std::string LogPath(int rank) const;
  // "rank 1 exited with status 1 (log: ...)" for each rank of `exits` (as
  // Wait returned them) that did not exit 0; empty when all did.
  std::string DescribeFailures(const std::vector<int>& exits) const;
  Subprocess& rank(int r) { return *ranks_[static_cast<size_t>(r)]; }

 private:
  RankGroup() = default;
  Options options_;
  int master_port_ = 0;
  std::vector<std::unique_ptr<Subprocess>> ranks_;
};

}  // namespace retort::cli

#endif  // RETORT_TOOLS_CLI_RANK_GROUP_H_
