#include "tools/cli/rank_group.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/free_port.h"
#include "common/status_macros.h"

namespace retort::cli {

absl::StatusOr<std::unique_ptr<RankGroup>> RankGroup::Start(const Options& options) {
  if (options.world_size < 1 || options.world_size > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("the number of ranks must be in [1, 256], got ", options.world_size));
  }
  RETORT_RETURN_IF_ERROR(MakeDirs(options.log_dir));
  RETORT_ASSIGN_OR_RETURN(std::string self, CurrentExecutablePath());
  std::unique_ptr<RankGroup> group(new RankGroup());
  group->options_ = options;
  group->master_port_ = options.master_port;
  if (group->master_port_ == 0) {
    RETORT_ASSIGN_OR_RETURN(group->master_port_, FreeLoopbackPort());
  }
  for (int r = 0; r < options.world_size; ++r) {
    Subprocess::Options child;
    child.argv = {self};
    child.argv.insert(child.argv.end(), options.args.begin(), options.args.end());
    child.env_overrides = {{"MASTER_ADDR", "127.0.0.1"},
                           {"MASTER_PORT", std::to_string(group->master_port_)},
                           {"RANK", std::to_string(r)},
                           {"WORLD_SIZE", std::to_string(options.world_size)},
                           {"LOCAL_RANK", std::to_string(r)},
                           {"LOCAL_WORLD_SIZE", std::to_string(options.world_size)}};
    child.env_overrides.insert(child.env_overrides.end(), options.env.begin(), options.env.end());
    if (r > 0 || !options.rank0_to_stderr) {
      child.stderr_path = group->LogPath(r);
      child.stdout_path = group->LogPath(r);
    }
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<Subprocess> process, Subprocess::Start(child));
    group->ranks_.push_back(std::move(process));
  }
  return group;
}

std::string RankGroup::LogPath(int rank) const {
  return absl::StrCat(options_.log_dir, "/rank-", rank, ".log");
}

absl::StatusOr<std::vector<int>> RankGroup::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<int> exits;
  for (auto& rank : ranks_) {
    RETORT_ASSIGN_OR_RETURN(int exit,
                            rank->Wait(std::max(deadline - absl::Now(), absl::ZeroDuration())));
    exits.push_back(exit);
  }
  return exits;
}

std::string RankGroup::DescribeFailures(const std::vector<int>& exits) const {
  std::string out;
  for (size_t r = 0; r < exits.size(); ++r) {
    if (exits[r] == 0) continue;
    absl::StrAppend(&out, out.empty() ? "" : "; ", "rank ", r, " exited with status ", exits[r]);
    if (r > 0 || !options_.rank0_to_stderr) {
      absl::StrAppend(&out, " (log: ", LogPath(static_cast<int>(r)), ")");
      absl::StatusOr<std::string> log = ReadFile(LogPath(static_cast<int>(r)));
      if (log.ok()) {
        absl::string_view text = absl::StripTrailingAsciiWhitespace(*log);
        const size_t last = text.rfind('\n');
        absl::StrAppend(&out, ": ", last == absl::string_view::npos ? text : text.substr(last + 1));
      }
    }
  }
  return out;
}

}  // namespace retort::cli
