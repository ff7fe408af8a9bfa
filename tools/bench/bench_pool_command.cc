// retort bench pool: what a remote teacher pool costs the trainer. Every
// figure is measured here, on this machine, each run, by training the same
// student for the same steps:
//
//   1. hard labels only (no teacher): the ceiling;
//   2. distilled from the teacher in this process;
//   3. distilled from a pool of teacher server processes on loopback, without
//      and with prefetching, with one teacher and with --bench_teachers;
//   4. failover: a pool teacher SIGKILLed (and one SIGSTOPped) mid-run; the
//      time from the signal to the pool taking it out of service and to its
//      work being re-sent.
//
// Student samples/s count the training steps only (the trainer's own clock,
// including any wait for the teacher); the stall is that wait per step.
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/endpoint_resolver.h"
#include "client/in_process_teacher_client.h"
#include "client/teacher_pool_client.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "teacher/native_teacher.h"
#include "tools/bench/bench_common.h"
#include "tools/cli/commands.h"
#include "tools/cli/flags.h"
#include "tools/cli/teacher_process.h"
#include "trainer/classifier/classifier_trainer.h"

ABSL_FLAG(int64_t, bench_steps, 300, "Training steps per measurement.");
ABSL_FLAG(int32_t, bench_teachers, 2, "Teacher server processes in the pool (at least 2).");
ABSL_FLAG(std::vector<std::string>, bench_teacher_flags, {},
          "Extra flags for each teacher server and the in-process teacher, comma-separated "
          "(e.g. --bf16).");

namespace retort::cli {

const std::vector<std::string> kBenchPoolFlags = {
    "checkpoint", "teacher_arch",     "teacher_hidden", "arch",           "hidden",
    "batch_size", "teacher_prefetch", "bench_steps",    "bench_teachers", "bench_teacher_flags",
    "data_dir",   "train_limit",      "work_dir",       "json_out",       "threads"};

namespace {

void Log(const std::string& line) { std::fprintf(stderr, "[bench] %s\n", line.c_str()); }

struct Measurement {
  std::string name;
  double samples_per_second = 0;
  double stall_ms_per_step = 0;
  nlohmann::json ToJson() const {
    return {{"name", name},
            {"samples_per_second", samples_per_second},
            {"teacher_wait_ms_per_step", stall_ms_per_step}};
  }
};

class PoolBench {
 public:
  PoolBench(trainer::ClassifierTrainerOptions student, data::TrainValidationSplit data,
            int64_t steps, std::string checkpoint, std::vector<std::string> teacher_flags,
            std::string scratch)
      : student_(std::move(student)),
        data_(std::move(data)),
        steps_(steps),
        checkpoint_(std::move(checkpoint)),
        teacher_flags_(std::move(teacher_flags)),
        scratch_(std::move(scratch)) {}

  absl::StatusOr<Measurement> Train(const std::string& name,
                                    std::shared_ptr<client::TeacherClient> teacher,
                                    int64_t prefetch) {
    trainer::ClassifierTrainerOptions o = student_;
    const int64_t batches = (data_.train->size()) / o.batch_size;
    o.epochs = steps_ / std::max<int64_t>(batches, 1) + 1;
    o.stop_after_steps = steps_;
    o.teacher_prefetch = prefetch;
    o.out_dir = scratch_ + "/student";
    o.overwrite = true;
    o.resume = false;
    o.log_every_steps = 0;
    o.label = name;
    if (teacher == nullptr) o.features = trainer::FeatureMatchOptions();  // hard labels
    Log(absl::StrCat(name, ": ", steps_, " steps of ", o.batch_size, " examples"));
    RETORT_ASSIGN_OR_RETURN(
        std::unique_ptr<trainer::ClassifierTrainer> t,
        trainer::ClassifierTrainer::Create(o, data_.train, data_.validation, teacher));
    RETORT_ASSIGN_OR_RETURN(trainer::ClassifierTrainResult result, t->Run());
    Measurement m;
    m.name = name;
    m.samples_per_second = result.samples_per_second;
    m.stall_ms_per_step = 1e3 * result.teacher_wait_seconds / static_cast<double>(steps_);
    Log(absl::StrFormat("%s: %.0f samples/s, teacher wait %.2f ms/step", name, m.samples_per_second,
                        m.stall_ms_per_step));
    return m;
  }

  absl::StatusOr<std::vector<std::unique_ptr<TeacherProcess>>> StartTeachers(int n) {
    std::vector<std::unique_ptr<TeacherProcess>> teachers;
    for (int i = 0; i < n; ++i) {
      TeacherProcess::Options serve;
      serve.checkpoint = checkpoint_;
      serve.scratch_dir = absl::StrCat(scratch_, "/teacher-", i);
      serve.extra_flags = teacher_flags_;
      RETORT_ASSIGN_OR_RETURN(std::unique_ptr<TeacherProcess> t, TeacherProcess::Start(serve));
      teachers.push_back(std::move(t));
    }
    return teachers;
  }

  static absl::StatusOr<std::shared_ptr<client::TeacherPoolClient>> Pool(
      const std::vector<std::unique_ptr<TeacherProcess>>& teachers) {
    std::vector<std::string> addresses;
    for (const auto& t : teachers) addresses.push_back(t->address());
    client::TeacherPoolClient::Options o;
    RETORT_ASSIGN_OR_RETURN(o.resolver,
                            client::CreateEndpointResolver(absl::StrJoin(addresses, ",")));
    o.endpoint.connect_timeout = absl::Seconds(60);
    o.verbose = false;
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<client::TeacherPoolClient> pool,
                            client::TeacherPoolClient::Create(o));
    return std::shared_ptr<client::TeacherPoolClient>(std::move(pool));
  }

  // Trains against a fresh pool and sends `signo` to one teacher once a third
  // of the steps are answered; returns the pool's reaction times.
  absl::StatusOr<nlohmann::json> Failover(int n, int signo, int64_t prefetch) {
    RETORT_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<TeacherProcess>> teachers,
                            StartTeachers(n));
    RETORT_ASSIGN_OR_RETURN(std::shared_ptr<client::TeacherPoolClient> pool, Pool(teachers));
    std::atomic<bool> done{false};
    absl::Time signalled = absl::InfiniteFuture();
    std::thread killer([&] {
      while (!done.load() && pool->stats().answered < steps_ / 3) {
        absl::SleepFor(absl::Milliseconds(1));
      }
      if (done.load()) return;
      signalled = absl::Now();
      teachers[0]->Signal(signo).IgnoreError();
    });
    const std::string signal_name = signo == SIGKILL ? "SIGKILL" : "SIGSTOP";
    const std::string name = absl::StrCat("pool of ", n, ", one ", signal_name);
    absl::StatusOr<Measurement> m = Train(name, pool, prefetch);
    done = true;
    killer.join();
    if (signo == SIGSTOP) teachers[0]->Signal(SIGCONT).IgnoreError();
    RETORT_RETURN_IF_ERROR(m.status());
    const client::TeacherPoolClient::Stats stats = pool->stats();
    nlohmann::json row = m->ToJson();
    row["signal"] = signal_name;
    row["resent"] = stats.resent;
    if (signalled == absl::InfiniteFuture() || stats.last_down < signalled) {
      return absl::InternalError(absl::StrCat(name, ": the pool never took the teacher out"));
    }
    row["out_of_service_after_ms"] = absl::ToDoubleMilliseconds(stats.last_down - signalled);
    if (stats.resent > 0 && stats.last_resend >= signalled) {
      row["resent_after_ms"] = absl::ToDoubleMilliseconds(stats.last_resend - signalled);
    }
    Log(absl::StrCat(name, ": out of service after ", row["out_of_service_after_ms"].get<double>(),
                     " ms, ", stats.resent, " requests re-sent"));
    pool.reset();
    for (auto& t : teachers) t->Signal(SIGKILL).IgnoreError();
    return row;
  }

 private:
  const trainer::ClassifierTrainerOptions student_;
  const data::TrainValidationSplit data_;
  const int64_t steps_;
  const std::string checkpoint_;
  const std::vector<std::string> teacher_flags_;
  const std::string scratch_;
};

}  // namespace

absl::Status RunBenchPool() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  const int64_t steps = absl::GetFlag(FLAGS_bench_steps);
  const int n = absl::GetFlag(FLAGS_bench_teachers);
  if (steps < 10 || n < 2) {
    return absl::InvalidArgumentError("--bench_steps must be >= 10 and --bench_teachers >= 2");
  }
  const std::string scratch = absl::GetFlag(FLAGS_work_dir) + "/bench_pool";
  RETORT_RETURN_IF_ERROR(MakeDirs(scratch));
  RETORT_ASSIGN_OR_RETURN(std::string checkpoint, BenchTeacherCheckpoint(scratch));
  RETORT_ASSIGN_OR_RETURN(trainer::ClassifierTrainerOptions student, TrainerOptionsFromFlags());
  RETORT_ASSIGN_OR_RETURN(data::TrainValidationSplit data,
                          data::LoadFashionMnistTrain(DataOptionsFromFlags()));
  const std::vector<std::string> teacher_flags = absl::GetFlag(FLAGS_bench_teacher_flags);
  const int64_t prefetch = student.teacher_prefetch;
  PoolBench bench(student, data, steps, checkpoint, teacher_flags, scratch);

  std::vector<Measurement> rows;
  RETORT_ASSIGN_OR_RETURN(Measurement hard, bench.Train("hard labels only", nullptr, 0));
  rows.push_back(hard);
  {
    teacher::NativeTeacher::Options native;
    native.checkpoint_path = checkpoint;
    native.bf16 =
        std::find(teacher_flags.begin(), teacher_flags.end(), "--bf16") != teacher_flags.end();
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<teacher::NativeTeacher> local,
                            teacher::NativeTeacher::Create(native));
    RETORT_ASSIGN_OR_RETURN(
        Measurement m,
        bench.Train("in-process teacher",
                    std::make_shared<client::InProcessTeacherClient>(std::move(local)), 0));
    rows.push_back(m);
  }
  {
    RETORT_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<TeacherProcess>> teachers,
                            bench.StartTeachers(n));
    std::vector<std::unique_ptr<TeacherProcess>> one;
    one.push_back(std::move(teachers[0]));
    {
      RETORT_ASSIGN_OR_RETURN(std::shared_ptr<client::TeacherPoolClient> pool,
                              PoolBench::Pool(one));
      RETORT_ASSIGN_OR_RETURN(Measurement a, bench.Train("pool of 1, no prefetch", pool, 0));
      rows.push_back(a);
      RETORT_ASSIGN_OR_RETURN(
          Measurement b,
          bench.Train(absl::StrCat("pool of 1, prefetch ", prefetch), pool, prefetch));
      rows.push_back(b);
    }
    teachers[0] = std::move(one[0]);
    RETORT_ASSIGN_OR_RETURN(std::shared_ptr<client::TeacherPoolClient> pool,
                            PoolBench::Pool(teachers));
    RETORT_ASSIGN_OR_RETURN(Measurement c,
                            bench.Train(absl::StrCat("pool of ", n, ", no prefetch"), pool, 0));
    rows.push_back(c);
    RETORT_ASSIGN_OR_RETURN(
        Measurement d,
        bench.Train(absl::StrCat("pool of ", n, ", prefetch ", prefetch), pool, prefetch));
    rows.push_back(d);
  }
  nlohmann::json failover = nlohmann::json::array();
  for (int signo : {SIGKILL, SIGSTOP}) {
    RETORT_ASSIGN_OR_RETURN(nlohmann::json row, bench.Failover(n, signo, prefetch));
    failover.push_back(row);
  }

  nlohmann::json report = {{"teacher_checkpoint", checkpoint},
                           {"teacher_flags", teacher_flags},
                           {"student", student.model.Describe()},
                           {"batch_size", student.batch_size},
                           {"steps", steps},
                           {"teachers", n},
                           {"prefetch", prefetch},
                           {"intra_op_threads", torch::get_num_threads()},
                           {"hardware_threads", std::thread::hardware_concurrency()}};
  nlohmann::json table = nlohmann::json::array();
  std::printf("\nstudent %s, batch %lld, %lld steps; teacher %s %s\n",
              student.model.Describe().c_str(), static_cast<long long>(student.batch_size),
              static_cast<long long>(steps), checkpoint.c_str(),
              absl::StrJoin(teacher_flags, " ").c_str());
  std::printf("\n%-26s %12s %12s %16s\n", "run", "samples/s", "vs hard", "wait ms/step");
  for (const Measurement& m : rows) {
    nlohmann::json row = m.ToJson();
    row["over_hard_labels"] = m.samples_per_second / hard.samples_per_second;
    table.push_back(row);
    std::printf("%-26s %12.0f %12.3f %16.2f\n", m.name.c_str(), m.samples_per_second,
                m.samples_per_second / hard.samples_per_second, m.stall_ms_per_step);
  }
  report["runs"] = table;
  report["failover"] = failover;
  std::printf("\n%-28s %12s %20s %16s\n", "failover", "samples/s", "out of service ms",
              "re-sent ms");
  for (const auto& f : failover) {
    std::printf("%-28s %12.0f %20.1f %16s\n", f["name"].get<std::string>().c_str(),
                f["samples_per_second"].get<double>(), f["out_of_service_after_ms"].get<double>(),
                f.contains("resent_after_ms")
                    ? absl::StrFormat("%.1f", f["resent_after_ms"].get<double>()).c_str()
                    : "(none in flight)");
  }
  std::string json_out = absl::GetFlag(FLAGS_json_out);
  if (json_out.empty()) json_out = scratch + "/bench_pool.json";
  RETORT_RETURN_IF_ERROR(WriteFileAtomically(json_out, report.dump(2) + "\n"));
  std::printf("\nresults: %s\n", json_out.c_str());
  return absl::OkStatus();
}

}  // namespace retort::cli
