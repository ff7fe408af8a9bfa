// retort launch: a teacher pool and W trainer ranks on this machine, the
// way a cluster launcher would start them.
//
//   retort launch --nproc=2 --launch_teachers=2 --teacher=teacher.pt
//       -- distill --epochs=5 --out_dir=runs/student
//   retort launch --nproc=2 --launch_teachers=2 --teacher=lm/teacher/model
//       -- lm train --data=lm/data --steps=600 --out_dir=runs/lm
//   retort launch --nproc=2 --launch_teachers=2 --teacher=lm/teacher/model
//       -- teacher dump --data=lm/data --seq_len=128 --out_dir=lm/cache
//   (one command line each)
//
// Starts --launch_teachers `retort teacher serve` processes on loopback
// (serving --teacher), waits until each is SERVING, then --nproc ranks of
// the command after `--` with torchrun's environment contract and
// --teachers naming the pool. Waits for every rank, then drains the
// teachers. Exit status 0 only when every rank exited 0.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "tools/cli/commands.h"
#include "tools/cli/flags.h"
#include "tools/cli/rank_group.h"
#include "tools/cli/teacher_process.h"

ABSL_FLAG(int32_t, nproc, 2, "ClassifierTrainer ranks to start (retort launch).");
ABSL_FLAG(int32_t, launch_teachers, 0,
          "Teacher server processes to start for the ranks (retort launch); 0: none, the "
          "command brings its own teacher or none.");
ABSL_FLAG(std::vector<std::string>, launch_teacher_flags, {},
          "Extra flags for each launched teacher server, comma-separated (e.g. --bf16).");
ABSL_FLAG(std::string, launch_dir, "launch",
          "Where retort launch keeps the teachers' and ranks' logs.");

namespace retort::cli {

const std::vector<std::string> kLaunchFlags = {"nproc", "launch_teachers", "launch_teacher_flags",
                                               "teacher", "launch_dir"};

absl::Status RunLaunch(const std::vector<std::string>& args) {
  const bool lm_train = args.size() >= 2 && args[0] == "lm" && args[1] == "train";
  // teacher dump ranks share a cache's shards; a launched pool serves them.
  const bool dump = args.size() >= 2 && args[0] == "teacher" && args[1] == "dump";
  if (args.empty() || (args[0] != "train" && args[0] != "distill" && !lm_train && !dump)) {
    return absl::InvalidArgumentError(
        "retort launch needs the ranks' command after `--`: retort launch --nproc=2 -- train "
        "--epochs=3 --out_dir=run (train, distill, lm train or teacher dump)");
  }
  const std::string command = lm_train ? "lm train" : dump ? "teacher dump" : args[0];
  const int nproc = absl::GetFlag(FLAGS_nproc);
  const int teachers = absl::GetFlag(FLAGS_launch_teachers);
  if (teachers < 0 || teachers > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("--launch_teachers must be in [0, 64], got ", teachers));
  }
  std::vector<std::string> rank_args = args;
  for (const std::string& arg : rank_args) {
    if (teachers > 0 &&
        (absl::StartsWith(arg, "--teachers=") || absl::StartsWith(arg, "--teacher_address=") ||
         absl::StartsWith(arg, "--teacher="))) {
      return absl::InvalidArgumentError(
          absl::StrCat("with --launch_teachers the ranks distill from the launched pool: drop ",
                       arg, " after `--`"));
    }
  }
  const std::string dir = absl::GetFlag(FLAGS_launch_dir);
  std::vector<std::unique_ptr<TeacherProcess>> pool;
  if (teachers > 0) {
    if (args[0] != "distill" && !lm_train && !dump) {
      return absl::InvalidArgumentError(
          "--launch_teachers serves a teacher to `distill`, `lm train` or `teacher dump` ranks");
    }
    const std::string checkpoint = absl::GetFlag(FLAGS_teacher);
    if (checkpoint.empty()) {
      return absl::InvalidArgumentError(
          "--launch_teachers needs --teacher=CHECKPOINT (before `--`): the model they serve");
    }
    std::vector<std::string> addresses;
    for (int i = 0; i < teachers; ++i) {
      TeacherProcess::Options serve;
      serve.checkpoint = checkpoint;
      serve.scratch_dir = absl::StrCat(dir, "/teacher-", i);
      serve.extra_flags = absl::GetFlag(FLAGS_launch_teacher_flags);
      RETORT_ASSIGN_OR_RETURN(std::unique_ptr<TeacherProcess> teacher,
                              TeacherProcess::Start(serve));
      std::fprintf(stderr, "[launch] teacher %d serving %s at %s (log %s)\n", i, checkpoint.c_str(),
                   teacher->address().c_str(), teacher->log_path().c_str());
      addresses.push_back(teacher->address());
      pool.push_back(std::move(teacher));
    }
    rank_args.push_back("--teachers=" + absl::StrJoin(addresses, ","));
  }
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<RankGroup> group,
                          RankGroup::Start({.world_size = nproc,
                                            .args = rank_args,
                                            .log_dir = dir,
                                            .master_port = 0,
                                            .env = {},
                                            .rank0_to_stderr = true}));
  std::fprintf(stderr,
               "[launch] %d ranks of `retort %s`, rendezvous 127.0.0.1:%d, logs of ranks "
               ">0 in %s/rank-<r>.log\n",
               nproc, command.c_str(), group->master_port(), dir.c_str());
  RETORT_ASSIGN_OR_RETURN(std::vector<int> exits, group->Wait(absl::InfiniteDuration()));
  for (auto& teacher : pool) {
    absl::StatusOr<int> drained = teacher->Stop(absl::Seconds(45));
    if (!drained.ok() || *drained != 0) {
      std::fprintf(stderr, "[launch] warning: a teacher did not drain cleanly (log %s)\n",
                   teacher->log_path().c_str());
    }
  }
  const std::string failures = group->DescribeFailures(exits);
  if (!failures.empty()) return absl::AbortedError(failures);
  std::fprintf(stderr, "[launch] all %d ranks finished\n", nproc);
  return absl::OkStatus();
}

}  // namespace retort::cli
