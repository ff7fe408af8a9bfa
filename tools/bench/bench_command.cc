// retort bench serve: measures a teacher server against the same model in
// process. Every figure is measured here, on this machine, each run.
//
//   1. rows/s over gRPC on loopback (pipelined requests) vs. the in-process
//      forward pass at the same batch, fp32 and bf16;
//   2. bytes per row on the wire for dense fp32/fp16 and top-k fp16/bf16, and
//      the codec's bytes per token for a 32k-vocabulary distribution;
//   3. p50/p99 request latency with 1, 4 and 16 concurrent streams;
//   4. 8 concurrent small-batch streams with dynamic batching on vs. off.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/remote_teacher_client.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "models/checkpoint_file.h"
#include "teacher/native_teacher.h"
#include "teacher/wire_codec.h"
#include "tools/bench/bench_common.h"
#include "tools/cli/commands.h"
#include "tools/cli/flags.h"
#include "tools/cli/teacher_process.h"

// Without --checkpoint the bench serves a freshly initialised teacher of
// --teacher_arch/--teacher_hidden (throughput does not depend on what the
// weights learned).
ABSL_FLAG(double, bench_seconds, 5, "Seconds each throughput or latency measurement runs.");
ABSL_FLAG(int64_t, bench_batch, 256, "Rows per request for the throughput comparison.");
ABSL_FLAG(int32_t, bench_pipeline, 4, "Requests in flight per stream for the throughput test.");
ABSL_FLAG(int64_t, bench_latency_batch, 32, "Rows per request for the latency tests.");
ABSL_FLAG(int64_t, bench_small_batch, 8, "Rows per request for the batching on/off test.");

namespace retort::cli {

const std::vector<std::string> kBenchFlags = {
    "checkpoint",        "teacher_arch", "teacher_hidden", "work_dir",
    "bench_seconds",     "bench_batch",  "bench_pipeline", "bench_latency_batch",
    "bench_small_batch", "json_out",     "threads"};

namespace {

using client::RemoteTeacherClient;

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return v[i];
}

torch::Tensor Inputs(const v1::TeacherFingerprint& fp, int64_t rows) {
  std::vector<int64_t> shape = {rows};
  for (int64_t d : fp.input_shape()) shape.push_back(d);
  return torch::rand(shape);
}

// Rows/s of the teacher's LogProbs in this process.
absl::StatusOr<double> InProcessRowsPerSecond(teacher::Teacher& t, int64_t batch,
                                              absl::Duration duration) {
  torch::Tensor x = Inputs(t.fingerprint(), batch);
  RETORT_RETURN_IF_ERROR(t.LogProbs(x, 1.0).status());  // warm-up
  int64_t rows = 0;
  const absl::Time start = absl::Now();
  while (absl::Now() - start < duration) {
    RETORT_RETURN_IF_ERROR(t.LogProbs(x, 1.0).status());
    rows += batch;
  }
  return static_cast<double>(rows) / absl::ToDoubleSeconds(absl::Now() - start);
}

absl::StatusOr<std::unique_ptr<RemoteTeacherClient>> Connect(const std::string& address,
                                                             const teacher::OutputSpec& output) {
  RemoteTeacherClient::Options o;
  o.address = address;
  o.output = output;
  return RemoteTeacherClient::Create(o);
}

struct StreamResult {
  int64_t rows = 0;
  std::vector<double> latencies;  // seconds
  RemoteTeacherClient::Stats stats;
};

// One client sending `batch`-row requests with `depth` in flight for
// `duration`.
absl::StatusOr<StreamResult> RunStream(const std::string& address,
                                       const teacher::OutputSpec& output, int64_t batch, int depth,
                                       absl::Duration duration) {
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<RemoteTeacherClient> client, Connect(address, output));
  torch::Tensor x = Inputs(client->info().fingerprint(), batch);
  RETORT_RETURN_IF_ERROR(client->LogProbs(x, 1.0).status());  // warm-up
  StreamResult result;
  std::deque<std::pair<RemoteTeacherClient::AnswerFuture, absl::Time>> in_flight;
  const absl::Time start = absl::Now();
  while (true) {
    const bool sending = absl::Now() - start < duration;
    while (sending && static_cast<int>(in_flight.size()) < depth) {
      in_flight.emplace_back(client->Send(x, 1.0), absl::Now());
    }
    if (in_flight.empty()) break;
    RETORT_ASSIGN_OR_RETURN(teacher::Answer answer, client->Wait(in_flight.front().first));
    result.latencies.push_back(absl::ToDoubleSeconds(absl::Now() - in_flight.front().second));
    result.rows += answer.log_probs.size(0);
    in_flight.pop_front();
  }
  result.stats = client->stats();
  return result;
}

struct ConcurrentResult {
  int streams = 0;
  double rows_per_second = 0;
  double p50_ms = 0, p99_ms = 0;
  nlohmann::json ToJson() const {
    return {{"streams", streams},
            {"rows_per_second", rows_per_second},
            {"p50_ms", p50_ms},
            {"p99_ms", p99_ms}};
  }
};

// `streams` clients, each with one request in flight at a time.
absl::StatusOr<ConcurrentResult> RunConcurrent(const std::string& address, int streams,
                                               int64_t batch, absl::Duration duration) {
  std::vector<absl::StatusOr<StreamResult>> results(static_cast<size_t>(streams),
                                                    absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  for (int i = 0; i < streams; ++i) {
    threads.emplace_back([&, i] {
      results[static_cast<size_t>(i)] =
          RunStream(address, teacher::OutputSpec(), batch, /*depth=*/1, duration);
    });
  }
  for (std::thread& t : threads) t.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  ConcurrentResult out;
  out.streams = streams;
  std::vector<double> latencies;
  int64_t rows = 0;
  for (auto& r : results) {
    RETORT_RETURN_IF_ERROR(r.status());
    rows += r->rows;
    latencies.insert(latencies.end(), r->latencies.begin(), r->latencies.end());
  }
  out.rows_per_second = static_cast<double>(rows) / seconds;
  out.p50_ms = 1e3 * Percentile(latencies, 0.50);
  out.p99_ms = 1e3 * Percentile(latencies, 0.99);
  return out;
}

// Bytes a request and an answer take on the wire per row, from a few
// requests with `output`.
absl::StatusOr<nlohmann::json> WireBytes(const std::string& address,
                                         const teacher::OutputSpec& output, int64_t batch) {
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<RemoteTeacherClient> client, Connect(address, output));
  torch::Tensor x = Inputs(client->info().fingerprint(), batch);
  constexpr int kRequests = 20;
  for (int i = 0; i < kRequests; ++i) RETORT_RETURN_IF_ERROR(client->LogProbs(x, 2.0).status());
  RemoteTeacherClient::Stats s = client->stats();
  const double rows = static_cast<double>(kRequests * batch);
  return nlohmann::json{{"output", output.Describe()},
                        {"response_bytes_per_row", static_cast<double>(s.bytes_received) / rows},
                        {"request_bytes_per_row", static_cast<double>(s.bytes_sent) / rows}};
}

// The codec's bytes per position for a language-model-sized vocabulary, on
// a Zipf-like synthetic distribution (no model of that size runs here).
nlohmann::json CodecBytesPerToken(int64_t vocab, int64_t positions) {
  torch::manual_seed(7);
  torch::Tensor rank = torch::arange(1, vocab + 1, torch::kFloat32);
  torch::Tensor logits = -1.1f * rank.log().unsqueeze(0).expand({positions, vocab}) +
                         0.5f * torch::randn({positions, vocab});
  teacher::Answer answer;
  answer.log_probs = torch::log_softmax(logits, 1);
  nlohmann::json rows = nlohmann::json::array();
  const std::vector<teacher::OutputSpec> specs = {
      {v1::OUTPUT_DENSE, 0, v1::DTYPE_FLOAT32},   {v1::OUTPUT_DENSE, 0, v1::DTYPE_BFLOAT16},
      {v1::OUTPUT_TOP_K, 64, v1::DTYPE_FLOAT16},  {v1::OUTPUT_TOP_K, 64, v1::DTYPE_BFLOAT16},
      {v1::OUTPUT_TOP_K, 16, v1::DTYPE_BFLOAT16}, {v1::OUTPUT_TOP_K, 128, v1::DTYPE_BFLOAT16}};
  for (const teacher::OutputSpec& spec : specs) {
    int64_t bytes = 0;
    for (const v1::DistillResponse& r :
         teacher::EncodeAnswer(1, answer, spec, teacher::kDefaultMaxMessageBytes)) {
      bytes += static_cast<int64_t>(r.ByteSizeLong());
    }
    rows.push_back({{"output", spec.Describe()},
                    {"vocab", vocab},
                    {"bytes_per_token", static_cast<double>(bytes) / positions}});
  }
  return rows;
}

void Log(const std::string& line) { std::fprintf(stderr, "[bench] %s\n", line.c_str()); }

}  // namespace

absl::StatusOr<std::string> BenchTeacherCheckpoint(const std::string& scratch) {
  const std::string given = absl::GetFlag(FLAGS_checkpoint);
  if (!given.empty()) return given;
  // Throughput does not depend on what the weights learned: a freshly
  // initialised teacher of the demo's architecture serves as well.
  RETORT_ASSIGN_OR_RETURN(
      models::ModelSpec spec,
      ModelSpecFrom("teacher_", absl::GetFlag(FLAGS_teacher_arch),
                    absl::GetFlag(FLAGS_teacher_hidden), absl::GetFlag(FLAGS_teacher_dropout),
                    absl::GetFlag(FLAGS_teacher_input_dropout)));
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<models::Classifier> model,
                          models::CreateClassifier(spec, 1));
  const std::string path = scratch + "/bench_teacher.pt";
  RETORT_RETURN_IF_ERROR(models::WriteCheckpoint(path, *model, nlohmann::json::object()));
  return path;
}

absl::Status RunBench() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  const absl::Duration duration = absl::Seconds(absl::GetFlag(FLAGS_bench_seconds));
  const int64_t batch = absl::GetFlag(FLAGS_bench_batch);
  const int depth = absl::GetFlag(FLAGS_bench_pipeline);
  if (duration <= absl::ZeroDuration() || batch < 1 || depth < 1) {
    return absl::InvalidArgumentError(
        "--bench_seconds, --bench_batch and --bench_pipeline must be positive");
  }
  const std::string scratch = absl::GetFlag(FLAGS_work_dir) + "/bench";
  RETORT_RETURN_IF_ERROR(MakeDirs(scratch));
  RETORT_ASSIGN_OR_RETURN(std::string checkpoint, BenchTeacherCheckpoint(scratch));
  nlohmann::json report = {{"checkpoint", checkpoint},
                           {"seconds_per_measurement", absl::ToDoubleSeconds(duration)},
                           {"batch", batch},
                           {"pipeline_depth", depth},
                           {"intra_op_threads", torch::get_num_threads()},
                           {"hardware_threads", std::thread::hardware_concurrency()}};

  // 1. gRPC vs in process, fp32 and bf16.
  nlohmann::json throughput = nlohmann::json::array();
  for (bool bf16 : {false, true}) {
    const std::string precision = bf16 ? "bf16" : "fp32";
    teacher::NativeTeacher::Options native;
    native.checkpoint_path = checkpoint;
    native.bf16 = bf16;
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<teacher::NativeTeacher> local,
                            teacher::NativeTeacher::Create(native));
    Log(absl::StrCat("in-process forward, ", precision, ", batch ", batch));
    RETORT_ASSIGN_OR_RETURN(double in_process, InProcessRowsPerSecond(*local, batch, duration));
    local.reset();
    TeacherProcess::Options serve;
    serve.checkpoint = checkpoint;
    serve.scratch_dir = scratch;
    if (bf16) serve.extra_flags.push_back("--bf16");
    // Same batch on both sides: the server must not merge pipelined
    // requests into larger (faster) forward passes.
    serve.extra_flags.push_back(absl::StrCat("--max_batch_rows=", batch));
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<TeacherProcess> server, TeacherProcess::Start(serve));
    Log(absl::StrCat("over gRPC, ", precision, ", batch ", batch, ", ", depth, " in flight"));
    RETORT_ASSIGN_OR_RETURN(StreamResult remote, RunStream(server->address(), teacher::OutputSpec(),
                                                           batch, depth, duration));
    const double seconds = absl::ToDoubleSeconds(duration);
    const double grpc_rows = static_cast<double>(remote.rows) / seconds;
    throughput.push_back({{"precision", precision},
                          {"in_process_rows_per_second", in_process},
                          {"grpc_rows_per_second", grpc_rows},
                          {"grpc_over_in_process", grpc_rows / in_process},
                          {"p50_ms", 1e3 * Percentile(remote.latencies, 0.5)}});
    Log(absl::StrFormat("%s: in process %.0f rows/s, gRPC %.0f rows/s (%.3f)", precision,
                        in_process, grpc_rows, grpc_rows / in_process));
    if (!bf16) {
      // 2. Bytes per row on this model.
      nlohmann::json wire = nlohmann::json::array();
      const std::vector<teacher::OutputSpec> specs = {{v1::OUTPUT_DENSE, 0, v1::DTYPE_FLOAT32},
                                                      {v1::OUTPUT_DENSE, 0, v1::DTYPE_FLOAT16},
                                                      {v1::OUTPUT_TOP_K, 5, v1::DTYPE_FLOAT16},
                                                      {v1::OUTPUT_TOP_K, 5, v1::DTYPE_BFLOAT16}};
      for (const teacher::OutputSpec& spec : specs) {
        RETORT_ASSIGN_OR_RETURN(nlohmann::json row, WireBytes(server->address(), spec, batch));
        wire.push_back(row);
      }
      report["bytes_per_row"] = wire;
      // 3. Latency under concurrent streams.
      nlohmann::json latency = nlohmann::json::array();
      for (int streams : {1, 4, 16}) {
        Log(absl::StrCat("latency, ", streams, " streams of ",
                         absl::GetFlag(FLAGS_bench_latency_batch), "-row requests"));
        RETORT_ASSIGN_OR_RETURN(ConcurrentResult r,
                                RunConcurrent(server->address(), streams,
                                              absl::GetFlag(FLAGS_bench_latency_batch), duration));
        latency.push_back(r.ToJson());
      }
      report["latency"] = latency;
    }
    RETORT_ASSIGN_OR_RETURN(int exit_code, server->Stop(absl::Seconds(60)));
    if (exit_code != 0) {
      return absl::InternalError(absl::StrCat("teacher server exited with ", exit_code));
    }
  }
  report["throughput"] = throughput;
  report["codec_bytes_per_token"] = CodecBytesPerToken(32000, 256);

  // 4. Dynamic batching on vs off, 8 streams of small requests.
  nlohmann::json batching = nlohmann::json::array();
  for (bool on : {true, false}) {
    TeacherProcess::Options serve;
    serve.checkpoint = checkpoint;
    serve.scratch_dir = scratch;
    if (!on) serve.extra_flags.push_back("--deterministic");
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<TeacherProcess> server, TeacherProcess::Start(serve));
    Log(absl::StrCat("8 streams of ", absl::GetFlag(FLAGS_bench_small_batch),
                     "-row requests, dynamic batching ", on ? "on" : "off"));
    RETORT_ASSIGN_OR_RETURN(
        ConcurrentResult r,
        RunConcurrent(server->address(), 8, absl::GetFlag(FLAGS_bench_small_batch), duration));
    nlohmann::json row = r.ToJson();
    row["dynamic_batching"] = on;
    batching.push_back(row);
    RETORT_RETURN_IF_ERROR(server->Stop(absl::Seconds(60)).status());
  }
  report["batching"] = batching;

  // The table.
  std::printf("\nteacher %s, %lld-row requests, %d in flight, %g s each\n", checkpoint.c_str(),
              static_cast<long long>(batch), depth, absl::ToDoubleSeconds(duration));
  std::printf("\n%-6s %16s %16s %8s\n", "dtype", "in-process r/s", "gRPC r/s", "ratio");
  for (const auto& t : throughput) {
    std::printf("%-6s %16.0f %16.0f %8.3f\n", t["precision"].get<std::string>().c_str(),
                t["in_process_rows_per_second"].get<double>(),
                t["grpc_rows_per_second"].get<double>(), t["grpc_over_in_process"].get<double>());
  }
  std::printf("\n%-14s %18s %18s\n", "output", "response B/row", "request B/row");
  for (const auto& w : report["bytes_per_row"]) {
    std::printf("%-14s %18.1f %18.1f\n", w["output"].get<std::string>().c_str(),
                w["response_bytes_per_row"].get<double>(),
                w["request_bytes_per_row"].get<double>());
  }
  std::printf("\n%-14s %18s   (codec, 32k vocabulary, synthetic Zipf distribution)\n", "output",
              "bytes/token");
  for (const auto& w : report["codec_bytes_per_token"]) {
    std::printf("%-14s %18.1f\n", w["output"].get<std::string>().c_str(),
                w["bytes_per_token"].get<double>());
  }
  std::printf("\n%-8s %12s %10s %10s\n", "streams", "rows/s", "p50 ms", "p99 ms");
  for (const auto& l : report["latency"]) {
    std::printf("%-8d %12.0f %10.2f %10.2f\n", l["streams"].get<int>(),
                l["rows_per_second"].get<double>(), l["p50_ms"].get<double>(),
                l["p99_ms"].get<double>());
  }
  std::printf("\n%-18s %12s %10s %10s   (8 streams)\n", "dynamic batching", "rows/s", "p50 ms",
              "p99 ms");
  for (const auto& b : batching) {
    std::printf("%-18s %12.0f %10.2f %10.2f\n", b["dynamic_batching"].get<bool>() ? "on" : "off",
                b["rows_per_second"].get<double>(), b["p50_ms"].get<double>(),
                b["p99_ms"].get<double>());
  }
  std::string json_out = absl::GetFlag(FLAGS_json_out);
  if (json_out.empty()) json_out = scratch + "/bench_serve.json";
  RETORT_RETURN_IF_ERROR(WriteFileAtomically(json_out, report.dump(2) + "\n"));
  std::printf("\nresults: %s\n", json_out.c_str());
  return absl::OkStatus();
}

}  // namespace retort::cli
