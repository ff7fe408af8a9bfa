// retort bench ddp: what data parallelism buys on this machine. Every figure
// is measured here, each run, by training the same model (hard labels, one
// LibTorch intra-op thread per process) for the same steps of global batch B:
//
//   1. one rank with batch B;
//   2. two ranks (c10d Gloo over loopback) with B/2 each;
//   3. two independent one-rank processes with B/2 each, side by side: the
//      same computation as (2) at the same load on the cores, without any
//      communication.
//
// Speed-up = (2) / (1) in samples/s. The share of a step spent communicating
// (and waiting for the slower rank), not hidden behind backward, is
// 1 - step time of (3) / step time of (2).
#include <cstdio>
#include <thread>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "tools/cli/commands.h"
#include "tools/cli/flags.h"
#include "tools/cli/rank_group.h"

ABSL_DECLARE_FLAG(int64_t, bench_steps);
ABSL_DECLARE_FLAG(double, bucket_mb);
ABSL_DECLARE_FLAG(int64_t, validation_size);
ABSL_DECLARE_FLAG(int64_t, batch_size);
ABSL_FLAG(int32_t, bench_repeats, 1,
          "Measure each configuration this many times (retort bench ddp).");

namespace retort::cli {

const std::vector<std::string> kBenchDdpFlags = {
    "arch",     "hidden",      "batch_size",      "bench_steps", "bench_repeats", "bucket_mb",
    "data_dir", "train_limit", "validation_size", "work_dir",    "json_out"};

namespace {

void Log(const std::string& line) { std::fprintf(stderr, "[bench] %s\n", line.c_str()); }

class DdpBench {
 public:
  DdpBench(std::string scratch, int64_t steps) : scratch_(std::move(scratch)), steps_(steps) {}

  std::vector<std::string> TrainArgs(const std::string& out, int64_t batch) const {
    return {"train",
            "--arch=" + absl::GetFlag(FLAGS_arch),
            "--hidden=" + absl::StrJoin(absl::GetFlag(FLAGS_hidden), ","),
            absl::StrCat("--batch_size=", batch),
            absl::StrCat("--stop_after_steps=", steps_),
            "--epochs=1000",
            "--log_every_steps=0",
            "--threads=1",
            absl::StrCat("--bucket_mb=", absl::GetFlag(FLAGS_bucket_mb)),
            "--data_dir=" + absl::GetFlag(FLAGS_data_dir),
            absl::StrCat("--train_limit=", absl::GetFlag(FLAGS_train_limit)),
            absl::StrCat("--validation_size=", absl::GetFlag(FLAGS_validation_size)),
            "--overwrite",
            "--out_dir=" + out};
  }

  // Runs `world` ranks (world 1 without a communicator) or, with
  // `independent`, that many separate one-rank processes; returns each
  // group's rank-0 samples/s.
  absl::StatusOr<std::vector<double>> Run(const std::string& name, int world, int64_t batch,
                                          bool independent) {
    std::vector<std::unique_ptr<RankGroup>> groups;
    const int processes = independent ? world : 1;
    for (int i = 0; i < processes; ++i) {
      const std::string out = absl::StrCat(scratch_, "/", name, "-", i);
      RETORT_ASSIGN_OR_RETURN(std::unique_ptr<RankGroup> group,
                              RankGroup::Start({.world_size = independent ? 1 : world,
                                                .args = TrainArgs(out, batch),
                                                .log_dir = out + ".logs",
                                                .master_port = 0,
                                                .env = {{"OMP_NUM_THREADS", "1"}},
                                                .rank0_to_stderr = false}));
      groups.push_back(std::move(group));
    }
    std::vector<double> rates;
    for (int i = 0; i < processes; ++i) {
      RETORT_ASSIGN_OR_RETURN(std::vector<int> exits, groups[i]->Wait(absl::Hours(2)));
      const std::string failures = groups[i]->DescribeFailures(exits);
      if (!failures.empty()) return absl::InternalError(absl::StrCat(name, ": ", failures));
      const std::string result = absl::StrCat(scratch_, "/", name, "-", i, "/result.json");
      RETORT_ASSIGN_OR_RETURN(std::string text, ReadFile(result));
      nlohmann::json parsed = nlohmann::json::parse(text, nullptr, false);
      if (!parsed.is_object() || !parsed.contains("samples_per_second")) {
        return absl::DataLossError(absl::StrCat(result, " has no samples_per_second"));
      }
      rates.push_back(parsed["samples_per_second"].get<double>());
    }
    return rates;
  }

 private:
  std::string scratch_;
  int64_t steps_;
};

}  // namespace

absl::Status RunBenchDdp() {
  const int64_t steps = absl::GetFlag(FLAGS_bench_steps);
  const int64_t batch = absl::GetFlag(FLAGS_batch_size);
  const int repeats = absl::GetFlag(FLAGS_bench_repeats);
  if (steps < 10 || batch < 2 || batch % 2 != 0 || repeats < 1) {
    return absl::InvalidArgumentError(
        "--bench_steps must be >= 10, --batch_size even and --bench_repeats >= 1");
  }
  const std::string scratch = absl::GetFlag(FLAGS_work_dir) + "/bench_ddp";
  RETORT_RETURN_IF_ERROR(MakeDirs(scratch));
  DdpBench bench(scratch, steps);

  nlohmann::json runs = nlohmann::json::array();
  std::vector<double> speedups, shares;
  for (int r = 0; r < repeats; ++r) {
    Log(absl::StrCat("repeat ", r + 1, "/", repeats, ": 1 rank, batch ", batch));
    RETORT_ASSIGN_OR_RETURN(std::vector<double> one, bench.Run("one-rank", 1, batch, false));
    Log(absl::StrCat("repeat ", r + 1, "/", repeats, ": 2 ranks, batch ", batch / 2, " each"));
    RETORT_ASSIGN_OR_RETURN(std::vector<double> two, bench.Run("two-ranks", 2, batch, false));
    Log(absl::StrCat("repeat ", r + 1, "/", repeats, ": 2 independent processes, batch ", batch / 2,
                     " each"));
    RETORT_ASSIGN_OR_RETURN(std::vector<double> alone,
                            bench.Run("independent", 2, batch / 2, true));
    const double speedup = two[0] / one[0];
    // Step times: a 2-rank step moves `batch` samples; an independent
    // process's step moves batch / 2.
    const double ddp_step = static_cast<double>(batch) / two[0];
    const double compute_step = 0.5 * (static_cast<double>(batch / 2) / alone[0] +
                                       static_cast<double>(batch / 2) / alone[1]);
    const double share = std::max(0.0, 1.0 - compute_step / ddp_step);
    speedups.push_back(speedup);
    shares.push_back(share);
    Log(
        absl::StrFormat("1 rank %.0f samples/s, 2 ranks %.0f samples/s (x%.2f), independent "
                        "%.0f + %.0f samples/s; communication %.1f%% of a step",
                        one[0], two[0], speedup, alone[0], alone[1], 100 * share));
    runs.push_back({{"one_rank_samples_per_second", one[0]},
                    {"two_ranks_samples_per_second", two[0]},
                    {"independent_samples_per_second", alone},
                    {"speedup", speedup},
                    {"two_rank_step_ms", 1e3 * ddp_step},
                    {"compute_step_ms", 1e3 * compute_step},
                    {"communication_share", share}});
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  nlohmann::json report = {{"model", absl::StrCat(absl::GetFlag(FLAGS_arch), " ",
                                                  absl::StrJoin(absl::GetFlag(FLAGS_hidden), ","))},
                           {"global_batch", batch},
                           {"steps", steps},
                           {"bucket_mb", absl::GetFlag(FLAGS_bucket_mb)},
                           {"intra_op_threads_per_process", 1},
                           {"hardware_threads", std::thread::hardware_concurrency()},
                           {"runs", runs},
                           {"median_speedup", median(speedups)},
                           {"median_communication_share", median(shares)}};
  std::printf("\n%s, global batch %lld, %lld steps, 1 intra-op thread per process, %u cores\n",
              report["model"].get<std::string>().c_str(), static_cast<long long>(batch),
              static_cast<long long>(steps), std::thread::hardware_concurrency());
  std::printf("%-8s %14s %14s %10s %16s\n", "repeat", "1 rank /s", "2 ranks /s", "speed-up",
              "communication");
  for (size_t i = 0; i < runs.size(); ++i) {
    std::printf("%-8zu %14.0f %14.0f %9.2fx %15.1f%%\n", i + 1,
                runs[i]["one_rank_samples_per_second"].get<double>(),
                runs[i]["two_ranks_samples_per_second"].get<double>(), speedups[i],
                100 * shares[i]);
  }
  std::printf("median: x%.2f, communication %.1f%% of a 2-rank step\n", median(speedups),
              100 * median(shares));
  std::string json_out = absl::GetFlag(FLAGS_json_out);
  if (json_out.empty()) json_out = scratch + "/bench_ddp.json";
  RETORT_RETURN_IF_ERROR(WriteFileAtomically(json_out, report.dump(2) + "\n"));
  std::printf("results: %s\n", json_out.c_str());
  return absl::OkStatus();
}

}  // namespace retort::cli
