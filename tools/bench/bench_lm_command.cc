// retort bench lm: language-model throughput on this machine, every figure
// measured each run.
//
//   1. the matmul peak: GFLOP/s of square fp32 and bf16 matmuls (the
//      denominator of model FLOPs utilisation);
//   2. the teacher's forward pass in process, fp32 and bf16: tokens/s and
//      MFU against the peak of its precision;
//   3. a teacher server (`retort teacher serve` child, fp32 forward, top-k
//      bf16 answers):
//      tokens/s served to pipelined requests, and the bytes per token on the
//      wire for dense and top-k answers on this model;
//   4. the student's training step: tokens/s and MFU trained on labels
//      alone, distilled from the fp32 teacher in process, and distilled from
//      the teacher server (requests for the next steps in flight while a
//      step trains).
//
// Model FLOPs per token are LlamaConfig::ForwardFlopsPerToken at the full
// sequence length (a training step counts three forward passes). Tokens are
// random ids: throughput does not depend on what they say.
#include <algorithm>
#include <cstdio>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/in_process_teacher_client.h"
#include "client/remote_teacher_client.h"
#include "client/teacher_client.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "data/dataset.h"
#include "models/llama_checkpoint.h"
#include "teacher/llama_teacher.h"
#include "tools/cli/commands.h"
#include "tools/cli/flags.h"
#include "tools/cli/teacher_process.h"
#include "trainer/lm/lm_trainer.h"

ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(int64_t, seq_len);
ABSL_DECLARE_FLAG(int32_t, top_k);
ABSL_DECLARE_FLAG(double, bench_seconds);
ABSL_FLAG(std::string, teacher_model, "d=256,layers=4,heads=4,ffn=688,vocab=4096,ctx=128",
          "bench lm without --checkpoint: the teacher to initialise (Llama config keys as "
          "--model).");
ABSL_FLAG(int64_t, bench_matmul_size, 1024, "Side of the square matmuls of the peak measurement.");

namespace retort::cli {

const std::vector<std::string> kBenchLmFlags = {
    "checkpoint",        "teacher_model", "model",         "seq_len",
    "batch_size",        "top_k",         "bench_seconds", "work_dir",
    "bench_matmul_size", "json_out",      "threads"};

namespace {

void Log(const std::string& line) { std::fprintf(stderr, "[bench lm] %s\n", line.c_str()); }

// Calls `body` (which returns the units it did) until `duration` has passed,
// after one warm-up call; units per second.
template <typename Body>
absl::StatusOr<double> Rate(absl::Duration duration, Body body) {
  RETORT_RETURN_IF_ERROR(body().status());
  int64_t units = 0;
  const absl::Time start = absl::Now();
  while (absl::Now() - start < duration) {
    RETORT_ASSIGN_OR_RETURN(int64_t done, body());
    units += done;
  }
  return static_cast<double>(units) / absl::ToDoubleSeconds(absl::Now() - start);
}

absl::StatusOr<double> MatmulGflops(torch::ScalarType dtype, int64_t n, absl::Duration duration) {
  const torch::Tensor a = torch::randn({n, n}).to(dtype), b = torch::randn({n, n}).to(dtype);
  RETORT_ASSIGN_OR_RETURN(double per_second, Rate(duration, [&]() -> absl::StatusOr<int64_t> {
                            return TorchCall("matmul", [&] {
                              torch::InferenceMode guard;
                              (void)torch::matmul(a, b);
                              return int64_t{1};
                            });
                          }));
  return per_second * 2.0 * static_cast<double>(n * n * n) / 1e9;
}

torch::Tensor RandomTokens(int64_t vocab, int64_t batch, int64_t length) {
  return torch::randint(vocab, {batch, length}, torch::kInt64);
}

struct StudentRun {
  std::string teacher;  // "none", "in process", "server"
  double tokens_per_second = 0;
  double mfu = 0;
  nlohmann::json ToJson() const {
    return {{"teacher", teacher}, {"tokens_per_second", tokens_per_second}, {"mfu", mfu}};
  }
};

// Student training throughput, measured on the one training loop
// (LmTrainer, as `retort lm train` runs it) over random token sequences:
// a run of a few steps times a step, then a run sized to last about
// `duration`, whose tokens/s (teacher waits included, evaluation and the
// final checkpoint excluded) is the answer. `teacher` may be null; the
// teacher is asked `depth` steps ahead.
absl::StatusOr<double> StudentTokensPerSecond(const models::LlamaConfig& config,
                                              std::shared_ptr<client::TeacherClient> teacher,
                                              int64_t batch, int64_t length, int depth,
                                              absl::Duration duration, const std::string& out_dir) {
  torch::manual_seed(1);
  const int64_t sequences = batch * 8;
  auto data = std::make_shared<data::TensorDataset>(
      RandomTokens(config.vocab_size, sequences, length),
      RandomTokens(config.vocab_size, sequences, length), config.vocab_size);
  auto run = [&](int64_t steps) -> absl::StatusOr<trainer::LmTrainResult> {
    trainer::LmTrainerOptions o;
    o.model = config;
    o.steps = steps;
    o.batch_size = batch;
    o.teacher_prefetch = std::max(1, depth);
    o.optimizer.kind = "adamw";
    o.optimizer.learning_rate = 1e-3;
    o.loss.alpha = teacher != nullptr ? 0.5 : 0.0;
    o.eval_sequences = 1;
    o.log_every_steps = 0;
    o.out_dir = out_dir;
    o.overwrite = true;
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<trainer::LmTrainer> trainer,
                            trainer::LmTrainer::Create(o, data, data, teacher));
    return trainer->Run();
  };
  constexpr int64_t kProbeSteps = 3;
  RETORT_ASSIGN_OR_RETURN(trainer::LmTrainResult probe, run(kProbeSteps));
  const double step_seconds = probe.train_seconds / std::max<int64_t>(1, probe.steps);
  const auto steps =
      static_cast<int64_t>(absl::ToDoubleSeconds(duration) / std::max(step_seconds, 1e-6));
  RETORT_ASSIGN_OR_RETURN(trainer::LmTrainResult result,
                          run(std::max<int64_t>(kProbeSteps, steps)));
  return result.tokens_per_second;
}

absl::StatusOr<std::unique_ptr<client::RemoteTeacherClient>> Connect(
    const std::string& address, const teacher::OutputSpec& output) {
  client::RemoteTeacherClient::Options o;
  o.address = address;
  o.output = output;
  o.output.keep_top_k = true;
  return client::RemoteTeacherClient::Create(o);
}

}  // namespace

absl::Status RunBenchLm() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  const absl::Duration duration = absl::Seconds(absl::GetFlag(FLAGS_bench_seconds));
  const int64_t batch = absl::GetFlag(FLAGS_batch_size);
  const int64_t length = absl::GetFlag(FLAGS_seq_len);
  const int32_t top_k = absl::GetFlag(FLAGS_top_k);
  if (duration <= absl::ZeroDuration() || batch < 1 || length < 1 || top_k < 0) {
    return absl::InvalidArgumentError(
        "--bench_seconds, --batch_size and --seq_len must be positive, --top_k >= 0");
  }
  const std::string scratch = absl::GetFlag(FLAGS_work_dir) + "/bench_lm";
  RETORT_RETURN_IF_ERROR(MakeDirs(scratch));

  // The teacher: --checkpoint, or a fresh one of --teacher_model.
  std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  if (checkpoint.empty()) {
    RETORT_ASSIGN_OR_RETURN(models::LlamaConfig tc,
                            models::LlamaConfig::Parse(absl::GetFlag(FLAGS_teacher_model), {}));
    torch::manual_seed(1);
    models::LlamaModel fresh(tc);
    checkpoint = scratch + "/teacher";
    RETORT_RETURN_IF_ERROR(models::SaveLlamaCheckpoint(fresh, checkpoint));
  }
  RETORT_ASSIGN_OR_RETURN(models::LlamaConfig teacher_config, models::ReadLlamaConfig(checkpoint));
  if (length > teacher_config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat("--seq_len=", length, " exceeds the teacher's ",
                                                   teacher_config.max_position_embeddings,
                                                   " positions"));
  }
  models::LlamaConfig base = teacher_config;
  base.max_position_embeddings = length;
  RETORT_ASSIGN_OR_RETURN(
      models::LlamaConfig student_config,
      models::LlamaConfig::Parse(
          absl::GetFlag(FLAGS_model).empty() ? kDefaultLmModel : absl::GetFlag(FLAGS_model), base));
  if (student_config.vocab_size != teacher_config.vocab_size) {
    return absl::InvalidArgumentError("--model must keep the teacher's vocabulary");
  }
  const double teacher_flops = static_cast<double>(teacher_config.ForwardFlopsPerToken(length));
  const double student_flops = static_cast<double>(student_config.ForwardFlopsPerToken(length));
  nlohmann::json report = {{"teacher", teacher_config.Describe()},
                           {"student", student_config.Describe()},
                           {"teacher_checkpoint", checkpoint},
                           {"batch", batch},
                           {"seq_len", length},
                           {"top_k", top_k},
                           {"teacher_forward_flops_per_token", teacher_flops},
                           {"student_forward_flops_per_token", student_flops},
                           {"intra_op_threads", torch::get_num_threads()},
                           {"hardware_threads", std::thread::hardware_concurrency()},
                           {"seconds_per_measurement", absl::ToDoubleSeconds(duration)}};

  // 1. The matmul peak.
  const int64_t n = absl::GetFlag(FLAGS_bench_matmul_size);
  std::map<std::string, double> peak;
  for (auto [name, dtype] :
       {std::pair{"fp32", torch::kFloat32}, std::pair{"bf16", torch::kBFloat16}}) {
    Log(absl::StrCat(name, " matmul ", n, "^3"));
    RETORT_ASSIGN_OR_RETURN(peak[name], MatmulGflops(dtype, n, duration));
  }
  report["matmul_peak_gflops"] = {{"fp32", peak["fp32"]}, {"bf16", peak["bf16"]}, {"size", n}};

  // 2. The teacher in process.
  nlohmann::json forward = nlohmann::json::array();
  for (bool bf16 : {false, true}) {
    const std::string precision = bf16 ? "bf16" : "fp32";
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<teacher::LlamaTeacher> t,
                            teacher::LlamaTeacher::Create(
                                {.checkpoint_dir = checkpoint, .max_batch = batch, .bf16 = bf16}));
    const torch::Tensor tokens = RandomTokens(teacher_config.vocab_size, batch, length);
    Log(absl::StrCat("teacher forward in process, ", precision));
    RETORT_ASSIGN_OR_RETURN(double rate, Rate(duration, [&]() -> absl::StatusOr<int64_t> {
                              RETORT_RETURN_IF_ERROR(t->Forward(tokens, {}).status());
                              return batch * length;
                            }));
    forward.push_back({{"precision", precision},
                       {"tokens_per_second", rate},
                       {"gflops", rate * teacher_flops / 1e9},
                       {"mfu", rate * teacher_flops / 1e9 / peak[precision]}});
  }
  report["teacher_forward"] = forward;

  // 2b. The teacher's top-k answer in process (forward, log-softmax at T,
  // top-k with the tail mass): what in-process distillation and `teacher
  // dump` ask for, against the forward pass alone.
  {
    const int64_t k = top_k > 0 ? top_k : 64;
    RETORT_ASSIGN_OR_RETURN(
        std::unique_ptr<teacher::LlamaTeacher> t,
        teacher::LlamaTeacher::Create({.checkpoint_dir = checkpoint, .max_batch = batch}));
    client::InProcessTeacherClient client(std::shared_ptr<teacher::Teacher>(std::move(t)),
                                          {.top_k = k});
    const torch::Tensor tokens = RandomTokens(teacher_config.vocab_size, batch, length);
    Log(absl::StrCat("teacher top-", k, " answer in process, fp32"));
    RETORT_ASSIGN_OR_RETURN(
        double rate, Rate(duration, [&]() -> absl::StatusOr<int64_t> {
          RETORT_RETURN_IF_ERROR(client.SubmitTargets({tokens, 1.0, {}, {}}).get().status());
          return batch * length;
        }));
    report["teacher_top_k_in_process"] = {
        {"top_k", k},
        {"tokens_per_second", rate},
        {"of_forward", rate / forward[0]["tokens_per_second"].get<double>()}};
  }

  // 3. The teacher server.
  TeacherProcess::Options serve;
  serve.checkpoint = checkpoint;
  serve.scratch_dir = scratch;
  serve.extra_flags = {absl::StrCat("--max_batch_rows=", batch)};
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<TeacherProcess> server, TeacherProcess::Start(serve));
  const teacher::OutputSpec topk{v1::OUTPUT_TOP_K, top_k > 0 ? top_k : 64, v1::DTYPE_BFLOAT16};
  {
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<client::RemoteTeacherClient> client,
                            Connect(server->address(), topk));
    const torch::Tensor tokens = RandomTokens(teacher_config.vocab_size, batch, length);
    std::deque<client::RemoteTeacherClient::AnswerFuture> in_flight;
    Log(absl::StrCat("teacher server, ", topk.Describe(), ", 4 requests in flight"));
    RETORT_ASSIGN_OR_RETURN(double rate, Rate(duration, [&]() -> absl::StatusOr<int64_t> {
                              while (in_flight.size() < 4) {
                                in_flight.push_back(client->Send(tokens, 1.0));
                              }
                              RETORT_RETURN_IF_ERROR(client->Wait(in_flight.front()).status());
                              in_flight.pop_front();
                              return batch * length;
                            }));
    while (!in_flight.empty()) {
      RETORT_RETURN_IF_ERROR(client->Wait(in_flight.front()).status());
      in_flight.pop_front();
    }
    report["server"] = {{"output", topk.Describe()},
                        {"tokens_per_second", rate},
                        {"mfu", rate * teacher_flops / 1e9 / peak["fp32"]}};
  }
  nlohmann::json wire = nlohmann::json::array();
  for (const teacher::OutputSpec& spec :
       std::vector<teacher::OutputSpec>{{v1::OUTPUT_DENSE, 0, v1::DTYPE_FLOAT32},
                                        {v1::OUTPUT_DENSE, 0, v1::DTYPE_BFLOAT16},
                                        {v1::OUTPUT_TOP_K, 128, v1::DTYPE_BFLOAT16},
                                        {v1::OUTPUT_TOP_K, 64, v1::DTYPE_BFLOAT16},
                                        {v1::OUTPUT_TOP_K, 16, v1::DTYPE_BFLOAT16},
                                        {v1::OUTPUT_TOP_K, 8, v1::DTYPE_BFLOAT16}}) {
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<client::RemoteTeacherClient> client,
                            Connect(server->address(), spec));
    const torch::Tensor tokens = RandomTokens(teacher_config.vocab_size, batch, length);
    constexpr int kRequests = 4;
    for (int i = 0; i < kRequests; ++i) {
      RETORT_RETURN_IF_ERROR(client->Wait(client->Send(tokens, 1.0)).status());
    }
    const double positions = static_cast<double>(kRequests * batch * length);
    wire.push_back({{"output", spec.Describe()},
                    {"response_bytes_per_token", client->stats().bytes_received / positions},
                    {"request_bytes_per_token", client->stats().bytes_sent / positions}});
  }
  report["wire_bytes_per_token"] = wire;

  // 4. The student's training step.
  nlohmann::json students = nlohmann::json::array();
  {
    Log("student, labels only");
    RETORT_ASSIGN_OR_RETURN(
        double rate, StudentTokensPerSecond(student_config, nullptr, batch, length, 1, duration,
                                            scratch + "/student"));
    students.push_back(
        StudentRun{"none", rate, rate * 3 * student_flops / 1e9 / peak["fp32"]}.ToJson());
  }
  {
    Log(absl::StrCat("student, teacher in process (", topk.Describe(), ")"));
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<teacher::LlamaTeacher> t,
                            teacher::LlamaTeacher::Create(
                                {.checkpoint_dir = checkpoint, .max_batch = batch, .bf16 = false}));
    auto local = std::make_shared<client::InProcessTeacherClient>(
        std::move(t), client::InProcessTeacherClient::Options{.top_k = topk.top_k});
    RETORT_ASSIGN_OR_RETURN(
        double rate, StudentTokensPerSecond(student_config, local, batch, length, 1, duration,
                                            scratch + "/student"));
    students.push_back(
        StudentRun{"in process", rate, rate * 3 * student_flops / 1e9 / peak["fp32"]}.ToJson());
  }
  {
    Log(absl::StrCat("student, teacher server (", topk.Describe(), "), 2 steps ahead"));
    RETORT_ASSIGN_OR_RETURN(std::shared_ptr<client::RemoteTeacherClient> remote,
                            Connect(server->address(), topk));
    RETORT_ASSIGN_OR_RETURN(
        double rate, StudentTokensPerSecond(student_config, remote, batch, length, 2, duration,
                                            scratch + "/student"));
    students.push_back(
        StudentRun{"server", rate, rate * 3 * student_flops / 1e9 / peak["fp32"]}.ToJson());
  }
  report["student_training"] = students;
  RETORT_RETURN_IF_ERROR(server->Stop(absl::Seconds(60)).status());

  std::printf(
      "\nteacher %s\nstudent %s\nbatch %lld x %lld tokens, %d intra-op threads, %g s each\n",
      teacher_config.Describe().c_str(), student_config.Describe().c_str(),
      static_cast<long long>(batch), static_cast<long long>(length), torch::get_num_threads(),
      absl::ToDoubleSeconds(duration));
  std::printf("\nmatmul peak (%lld^3): fp32 %.1f GFLOP/s, bf16 %.1f GFLOP/s\n",
              static_cast<long long>(n), peak["fp32"], peak["bf16"]);
  std::printf("\n%-28s %12s %10s %8s\n", "teacher forward", "tokens/s", "GFLOP/s", "MFU");
  for (const auto& f : forward) {
    std::printf("%-28s %12.0f %10.1f %7.1f%%\n",
                ("in process " + f["precision"].get<std::string>()).c_str(),
                f["tokens_per_second"].get<double>(), f["gflops"].get<double>(),
                100 * f["mfu"].get<double>());
  }
  std::printf("%-28s %12.0f %9.2fx of the fp32 forward pass\n",
              absl::StrCat("in process fp32, top-",
                           report["teacher_top_k_in_process"]["top_k"].get<int64_t>())
                  .c_str(),
              report["teacher_top_k_in_process"]["tokens_per_second"].get<double>(),
              report["teacher_top_k_in_process"]["of_forward"].get<double>());
  std::printf("%-28s %12.0f %10.1f %7.1f%%\n", ("server fp32, " + topk.Describe()).c_str(),
              report["server"]["tokens_per_second"].get<double>(),
              report["server"]["tokens_per_second"].get<double>() * teacher_flops / 1e9,
              100 * report["server"]["mfu"].get<double>());
  std::printf("\n%-16s %22s %22s\n", "output", "response bytes/token", "request bytes/token");
  for (const auto& w : wire) {
    std::printf("%-16s %22.1f %22.1f\n", w["output"].get<std::string>().c_str(),
                w["response_bytes_per_token"].get<double>(),
                w["request_bytes_per_token"].get<double>());
  }
  std::printf("\n%-28s %12s %8s\n", "student training (fp32)", "tokens/s", "MFU");
  for (const auto& s : students) {
    std::printf("%-28s %12.0f %7.1f%%\n", ("teacher: " + s["teacher"].get<std::string>()).c_str(),
                s["tokens_per_second"].get<double>(), 100 * s["mfu"].get<double>());
  }
  std::string json_out = absl::GetFlag(FLAGS_json_out);
  if (json_out.empty()) json_out = scratch + "/bench_lm.json";
  RETORT_RETURN_IF_ERROR(WriteFileAtomically(json_out, report.dump(2) + "\n"));
  std::printf("\nresults: %s\n", json_out.c_str());
  return absl::OkStatus();
}

}  // namespace retort::cli
