// retort teacher serve: a teacher model behind gRPC until SIGTERM/SIGINT.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "models/llama_checkpoint.h"
#include "teacher/llama_teacher.h"
#include "teacher/native_teacher.h"
#include "teacher/server/teacher_server.h"
#include "teacher/torchscript_teacher.h"
#include "tools/cli/commands.h"
#include "tools/cli/flags.h"

ABSL_FLAG(std::string, torchscript, "",
          "Serve this TorchScript module (forward: float inputs -> logits, or (logits, "
          "Dict[str, Tensor] of hidden states)) instead of a --checkpoint.");
ABSL_FLAG(std::vector<std::string>, input_shape, std::vector<std::string>({"1", "28", "28"}),
          "Shape of one input example for --torchscript, comma-separated.");
ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "host:port to serve on; port 0 picks a free one. Loopback unless told otherwise.");
ABSL_FLAG(std::string, port_file, "",
          "Write the chosen port here (atomically) once the teacher is SERVING.");
ABSL_FLAG(std::string, metrics_listen, "",
          "host:port for Prometheus metrics at /metrics (e.g. 127.0.0.1:9090); empty: off.");
ABSL_FLAG(int64_t, max_batch_rows, 128,
          "Rows merged into one forward pass at most (requests larger than this run alone). "
          "128 measured best on CPU (docs/performance.md); raise it on a GPU.");
ABSL_FLAG(double, max_delay_ms, 0.0,
          "How long the first queued request may wait for others to join its batch. 0: a "
          "free worker runs whatever is queued at once, and batches form from what arrives "
          "during a forward pass (measured best on CPU; a GPU may gain from a few ms).");
ABSL_FLAG(int64_t, max_queue_rows, 16384,
          "Rows queued at most; requests beyond are answered RESOURCE_EXHAUSTED.");
ABSL_FLAG(int32_t, batch_workers, 1, "Threads running forward passes.");
ABSL_FLAG(bool, deterministic, false,
          "Compute every request on its own (no dynamic batching), so its result never "
          "depends on what else was queued.");
ABSL_FLAG(bool, bf16, false, "Run the forward pass in bfloat16 (AMX on these CPUs).");
ABSL_FLAG(int64_t, max_rows_per_request, 8192, "Rows one request may carry.");
ABSL_FLAG(int32_t, max_top_k, 1024, "Largest k a request may ask for.");
ABSL_FLAG(int32_t, max_streams, 64, "Concurrent Distill streams; more get RESOURCE_EXHAUSTED.");
ABSL_FLAG(int32_t, max_in_flight, 64,
          "Unanswered requests per stream; more are answered RESOURCE_EXHAUSTED.");
ABSL_FLAG(double, drain_timeout, 30,
          "Seconds to finish in-flight requests after SIGTERM/SIGINT before exiting.");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: serve TLS.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA: require client certificates signed by it (mutual TLS).");
ABSL_FLAG(std::string, auth_token_file, "", "File holding a bearer token every call must present.");
ABSL_FLAG(bool, allow_insecure_token, false,
          "Allow --auth_token_file without TLS (the token then travels in the clear).");

namespace retort::cli {

const std::vector<std::string> kTeacherServeFlags = {"checkpoint",
                                                     "torchscript",
                                                     "input_shape",
                                                     "listen",
                                                     "port_file",
                                                     "metrics_listen",
                                                     "max_batch_rows",
                                                     "max_delay_ms",
                                                     "max_queue_rows",
                                                     "batch_workers",
                                                     "deterministic",
                                                     "bf16",
                                                     "max_rows_per_request",
                                                     "max_top_k",
                                                     "max_streams",
                                                     "max_in_flight",
                                                     "drain_timeout",
                                                     "tls_cert",
                                                     "tls_key",
                                                     "tls_client_ca",
                                                     "auth_token_file",
                                                     "allow_insecure_token",
                                                     "threads"};

namespace {

// Where the signal handler writes. A handler can reach no object, so this one
// descriptor is process state; it is set once, before the handler is installed.
int signal_pipe_write = -1;

extern "C" void OnStopSignal(int signo) {
  const unsigned char byte = static_cast<unsigned char>(signo);
  const ssize_t written = write(signal_pipe_write, &byte, 1);
  (void)written;  // nothing useful to do in a handler if the pipe is full
}

absl::StatusOr<std::shared_ptr<teacher::Teacher>> LoadTeacher() {
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  const std::string torchscript = absl::GetFlag(FLAGS_torchscript);
  if (checkpoint.empty() == torchscript.empty()) {
    return absl::InvalidArgumentError(
        "give exactly one of --checkpoint (a retort checkpoint) or --torchscript (a module)");
  }
  if (!checkpoint.empty() && models::IsLlamaCheckpoint(checkpoint)) {
    teacher::LlamaTeacher::Options o;
    o.checkpoint_dir = checkpoint;
    o.bf16 = absl::GetFlag(FLAGS_bf16);
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<teacher::LlamaTeacher> t,
                            teacher::LlamaTeacher::Create(o));
    return std::shared_ptr<teacher::Teacher>(std::move(t));
  }
  if (!checkpoint.empty()) {
    teacher::NativeTeacher::Options o;
    o.checkpoint_path = checkpoint;
    o.bf16 = absl::GetFlag(FLAGS_bf16);
    RETORT_ASSIGN_OR_RETURN(std::unique_ptr<teacher::NativeTeacher> t,
                            teacher::NativeTeacher::Create(o));
    return std::shared_ptr<teacher::Teacher>(std::move(t));
  }
  teacher::TorchScriptTeacher::Options o;
  o.path = torchscript;
  o.bf16 = absl::GetFlag(FLAGS_bf16);
  o.input_shape.clear();
  for (const std::string& d : absl::GetFlag(FLAGS_input_shape)) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(d, &v) || v < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("--input_shape: '", d, "' is not a positive integer"));
    }
    o.input_shape.push_back(v);
  }
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<teacher::TorchScriptTeacher> t,
                          teacher::TorchScriptTeacher::Create(o));
  return std::shared_ptr<teacher::Teacher>(std::move(t));
}

absl::StatusOr<teacher::TeacherServer::Options> ServerOptionsFromFlags() {
  teacher::TeacherServer::Options o;
  o.listen = absl::GetFlag(FLAGS_listen);
  o.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  o.batcher.max_batch_rows = absl::GetFlag(FLAGS_max_batch_rows);
  const double delay_ms = absl::GetFlag(FLAGS_max_delay_ms);
  if (!(delay_ms >= 0 && delay_ms <= 10000)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_delay_ms must be in [0, 10000], got ", delay_ms));
  }
  o.batcher.max_delay = absl::Microseconds(static_cast<int64_t>(delay_ms * 1000));
  o.batcher.max_queue_rows = absl::GetFlag(FLAGS_max_queue_rows);
  o.batcher.workers = absl::GetFlag(FLAGS_batch_workers);
  o.batcher.deterministic = absl::GetFlag(FLAGS_deterministic);
  o.max_rows_per_request = absl::GetFlag(FLAGS_max_rows_per_request);
  o.max_top_k = absl::GetFlag(FLAGS_max_top_k);
  o.max_streams = absl::GetFlag(FLAGS_max_streams);
  o.max_in_flight_per_stream = absl::GetFlag(FLAGS_max_in_flight);
  o.compute_dtype = absl::GetFlag(FLAGS_bf16) ? "bf16" : "fp32";
  o.security.tls_cert_path = absl::GetFlag(FLAGS_tls_cert);
  o.security.tls_key_path = absl::GetFlag(FLAGS_tls_key);
  o.security.tls_client_ca_path = absl::GetFlag(FLAGS_tls_client_ca);
  o.security.allow_insecure_token = absl::GetFlag(FLAGS_allow_insecure_token);
  RETORT_ASSIGN_OR_RETURN(o.security.auth_token,
                          ReadTokenFile("auth_token_file", absl::GetFlag(FLAGS_auth_token_file)));
  return o;
}

}  // namespace

absl::Status RunTeacherServe() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  const double drain_seconds = absl::GetFlag(FLAGS_drain_timeout);
  if (!(drain_seconds >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--drain_timeout must be >= 0 seconds, got ", drain_seconds));
  }
  // SIGTERM and SIGINT may arrive on any thread (OpenBLAS starts its pool
  // before main): a handler turns each into a byte on a pipe that this
  // thread waits on, so neither one ever kills the process mid-drain.
  int signal_pipe[2];
  if (pipe2(signal_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  signal_pipe_write = signal_pipe[1];
  struct sigaction action = {};
  action.sa_handler = &OnStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);

  RETORT_ASSIGN_OR_RETURN(teacher::TeacherServer::Options options, ServerOptionsFromFlags());
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<teacher::Teacher> model, LoadTeacher());
  if (auto* llama = dynamic_cast<teacher::LlamaTeacher*>(model.get())) {
    options.max_sequence_length = llama->model().config().max_position_embeddings;
  }
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<teacher::TeacherServer> server,
                          teacher::TeacherServer::Create(options, model));
  const v1::TeacherFingerprint& fp = server->fingerprint();
  std::fprintf(
      stderr, "[teacher] serving %s (weights %s, %s%s) on port %d%s\n", fp.architecture().c_str(),
      fp.weights_sha256().substr(0, 12).c_str(), options.compute_dtype.c_str(),
      options.batcher.deterministic ? ", deterministic" : ", dynamic batching", server->port(),
      server->metrics_port() != 0
          ? absl::StrCat("; metrics on port ", server->metrics_port()).c_str()
          : "");
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty()) {
    RETORT_RETURN_IF_ERROR(WriteFileAtomically(port_file, absl::StrCat(server->port(), "\n")));
  }
  unsigned char signo = 0;
  while (read(signal_pipe[0], &signo, 1) < 0 && errno == EINTR) {
  }
  std::fprintf(stderr, "[teacher] %s: draining (up to %gs)\n",
               signo == SIGTERM ? "SIGTERM" : "SIGINT", drain_seconds);
  const bool answered = server->Drain(absl::Seconds(drain_seconds));
  std::fprintf(stderr, "[teacher] stopped; %s\n",
               answered ? "every accepted request was answered"
                        : "the drain timeout passed with requests unanswered");
  return absl::OkStatus();
}

}  // namespace retort::cli
