#include "tools/cli/flags.h"

#include "common/caching_cpu_allocator.h"

#include <csignal>
#include <cstdio>
#include <thread>

#include <torch/torch.h>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/caching_cpu_allocator.h"
#include "common/file_util.h"
#include "common/intra_op_threads.h"
#include "common/status_macros.h"
#include "common/stop_signal.h"
#include "common/torch_status.h"
#include "distributed/c10d_communicator.h"
#include "models/checkpoint_file.h"

// Data.
ABSL_FLAG(std::string, data_dir, retort::data::kDefaultFashionMnistDir,
          "Directory holding the Fashion-MNIST IDX files (*-ubyte.gz).");
ABSL_FLAG(int64_t, max_shard_bytes, 0,
          "Commands that write Llama checkpoints: split weights larger than this many bytes into "
          "shards with a model.safetensors.index.json, as save_pretrained(max_shard_size=...); "
          "0: one model.safetensors.");
ABSL_FLAG(std::string, weights_dtype, "float32",
          "Llama checkpoints written (export --format=safetensors, model init): float32, "
          "bfloat16 or float16 weights.");
ABSL_FLAG(int64_t, validation_size, 5000,
          "Training examples held out for validation (the test set is used only for final "
          "evaluation).");
ABSL_FLAG(int64_t, train_limit, 0, "If > 0, train on only this many examples (quick runs, tests).");
ABSL_FLAG(int32_t, threads, 1,
          "LibTorch intra-op (OpenMP) threads, for every kernel but the matrix products "
          "(--blas_threads); 0 uses every core. On the 2-vCPU build machines one OpenMP "
          "thread with OpenBLAS on both cores trains fastest (docs/performance.md).");
ABSL_FLAG(int64_t, cpu_cache_mb, 2048,
          "Freed CPU tensor buffers (256 KiB and larger) kept for reuse, at most this many MiB: "
          "a training step allocates the same large temporaries every step, and without reuse "
          "the kernel faults their pages in again each time (docs/performance.md); 0 uses "
          "glibc's allocator alone.");
ABSL_FLAG(int32_t, blas_threads, -1,
          "OpenBLAS threads (LibTorch's CPU matrix products), apart from --threads (OpenMP, "
          "every other kernel); 0 uses every core; -1 (default): the cores divided among the "
          "ranks on this machine (LOCAL_WORLD_SIZE), the fastest setting measured "
          "(docs/performance.md).");
ABSL_FLAG(uint64_t, seed, 1, "Seed for initial weights, data order, dropout and jitter.");

// Model.
ABSL_FLAG(std::string, arch, "mlp", "Architecture of the model to train: mlp or cnn.");
ABSL_FLAG(std::vector<std::string>, hidden, std::vector<std::string>({"128"}),
          "Hidden widths, comma-separated. mlp: one per hidden layer; cnn: conv1,conv2,fc.");
ABSL_FLAG(double, dropout, 0.0, "Dropout after each hidden layer.");
ABSL_FLAG(double, input_dropout, 0.0, "Dropout on the input pixels (mlp only).");

// Training.
ABSL_FLAG(int64_t, epochs, 30, "Passes over the training set.");
ABSL_FLAG(int64_t, batch_size, 128, "Examples per optimizer step.");
ABSL_FLAG(std::string, optimizer, "adamw", "adamw, or sgd (with momentum).");
ABSL_FLAG(double, lr, 3e-3, "Peak learning rate.");
ABSL_FLAG(double, momentum, 0.9, "SGD momentum.");
ABSL_FLAG(double, weight_decay, 0.0, "Weight decay (decoupled for adamw).");
ABSL_FLAG(double, warmup, 0.05, "Share of all steps spent in linear warmup.");
ABSL_FLAG(double, min_lr_ratio, 0.0, "The cosine schedule ends at lr * this.");
ABSL_FLAG(double, clip_grad_norm, 0.0, "Clip the global gradient norm to this; 0 disables.");
ABSL_FLAG(int64_t, jitter, 0, "Shift training images by up to this many pixels (augmentation).");
ABSL_FLAG(std::string, out_dir, "",
          "Directory for checkpoints (checkpoints/ckpt-<step>/, best.pt), metrics.jsonl and "
          "result.json.");
ABSL_FLAG(std::string, resume, "never",
          "auto: continue from the newest complete checkpoint in --out_dir (skipping partial or "
          "corrupt ones with a warning), or start afresh if there is none; never: refuse an "
          "--out_dir that holds checkpoints unless --overwrite.");
ABSL_FLAG(bool, overwrite, false, "Start afresh even if out_dir holds a checkpoint.");
ABSL_FLAG(int64_t, checkpoint_every_steps, 0,
          "Also checkpoint every this many steps; 0: only at epoch ends.");
ABSL_FLAG(int32_t, keep_checkpoints, 3, "Keep the newest this many checkpoints (at least 2).");
ABSL_FLAG(std::string, backend, "auto",
          "Data parallelism across the ranks a launcher started (torchrun's or Slurm's "
          "environment): auto or gloo (c10d Gloo, CPU); nccl needs a CUDA LibTorch.");
ABSL_FLAG(double, dist_timeout, 300,
          "Seconds a rank waits for the others (rendezvous, every collective) before failing.");
ABSL_FLAG(double, bucket_mb, 25,
          "Gradient all-reduce bucket size in MB (the first bucket is at most 1 MB, as in "
          "PyTorch's DDP); fractions allowed for small models.");
ABSL_FLAG(int64_t, grad_accum_steps, 1,
          "Split each rank's share of a step's batch into this many micro-batches, "
          "accumulating gradients (all-reduced once, during the last); saves activation "
          "memory, same update.");
ABSL_FLAG(int64_t, testonly_crash_while_checkpointing_step, 0,
          "Testing only: SIGKILL the trainer while it writes the checkpoint of this step.");
ABSL_FLAG(std::string, stop_signal, "",
          "A signal that, like SIGTERM and SIGINT, makes training finish its step, write a "
          "checkpoint and exit with code 75 (e.g. USR1, for Slurm's --signal=USR1@120); "
          "empty: only SIGTERM and SIGINT.");
ABSL_FLAG(std::string, device, "cpu",
          "Where the student trains: cpu, or cuda / cuda:N with a LibTorch built with CUDA.");
ABSL_FLAG(int64_t, log_every_steps, 100, "Write a metrics line every this many steps.");
ABSL_FLAG(int64_t, stop_after_steps, 0,
          "Stop after this many steps, checkpointed, as if interrupted; 0 runs to the end.");

// Distillation.
ABSL_FLAG(std::string, teacher, "", "Teacher checkpoint to distill from (retort distill).");
ABSL_FLAG(double, temperature, 1.0, "Distillation temperature T.");
ABSL_FLAG(double, feature_weight, 0.0,
          "Weight of the feature-matching term (hint layers through learned adapters from "
          "student to teacher widths); 0 turns it off.");
ABSL_FLAG(std::string, match, "",
          "Feature-matching layer pairs: s<i>:t<j>[:weight],... (0-based positions in each "
          "model's hidden-layer list, or layer names; for transformers s<i> is the residual "
          "stream after i blocks). Empty: student and teacher intermediate layers paired "
          "evenly.");
ABSL_FLAG(std::string, feature_loss, "mse", "Feature-matching loss: mse or cosine.");
ABSL_FLAG(std::string, adapter, "linear", "Feature adapters: linear, or mlp (Linear-GELU-Linear).");
ABSL_FLAG(int64_t, teacher_cache_mb, 256,
          "Remember the teacher's answer per input row, up to this many MB, so later epochs "
          "skip teacher forward passes (no effect with --jitter). 0 disables; use 0 when a "
          "resumed run must match an uninterrupted one bit for bit.");
ABSL_FLAG(double, alpha, 0.5,
          "Weight of the soft (T^2-scaled KL) term; 1 - alpha weights the hard-label term.");

// Remote teachers.
ABSL_FLAG(std::string, teachers, "",
          "Teacher servers (retort teacher serve) to distill from over gRPC, used instead of "
          "--teacher: host:port,host:port, or dns:///name:port for every address a DNS name "
          "resolves to (re-resolved during the run).");
ABSL_FLAG(std::string, teacher_address, "", "One teacher server, host:port (as --teachers).");
ABSL_FLAG(double, teacher_wait, 300,
          "Seconds the trainer keeps retrying when no teacher answers; then it checkpoints and "
          "exits non-zero.");
ABSL_FLAG(double, teacher_attempt_timeout, 60,
          "Seconds a teacher may hold a request before it counts as hung and its work is sent "
          "to another.");
ABSL_FLAG(double, teacher_keepalive, 10,
          "Seconds between keepalive pings on teacher streams (at least 5); a teacher that does "
          "not answer one within half this time is dropped.");
ABSL_FLAG(int64_t, teacher_prefetch, 4,
          "Steps whose teacher answers are requested ahead of training (0: ask when needed).");
ABSL_FLAG(std::string, teacher_output, "dense",
          "What the teacher sends per row: dense (every class) or topk (the k largest "
          "log-probabilities plus the tail mass).");
ABSL_FLAG(int32_t, teacher_top_k, 5, "k for --teacher_output=topk.");
ABSL_FLAG(std::string, teacher_value_dtype, "fp32",
          "How the teacher sends log-probabilities: fp32, fp16 or bf16.");
ABSL_FLAG(std::string, teacher_tls_ca, "",
          "PEM CA that signed the teacher's certificate: connect with TLS.");
ABSL_FLAG(std::string, teacher_tls_cert, "", "PEM client certificate for mutual TLS.");
ABSL_FLAG(std::string, teacher_tls_key, "", "PEM private key for --teacher_tls_cert.");
ABSL_FLAG(std::string, teacher_tls_server_name, "",
          "Name to expect in the teacher's certificate, when it differs from the address.");
ABSL_FLAG(std::string, teacher_token_file, "", "File holding the teacher's bearer token.");
ABSL_FLAG(bool, teacher_insecure_token, false,
          "Send --teacher_token_file without TLS (the token then travels in the clear).");
ABSL_FLAG(double, teacher_connect_timeout, 60,
          "Seconds to wait for the teacher server to answer at start.");

// Eval.
ABSL_FLAG(std::string, checkpoint, "",
          "Checkpoint to evaluate (eval), serve (teacher serve) or benchmark (bench serve).");
ABSL_FLAG(std::string, split, "test", "Which data to evaluate on: validation or test.");
ABSL_FLAG(std::string, json_out, "", "Also write the result as JSON to this file.");

// Demo.
ABSL_FLAG(std::string, work_dir, "retort_work",
          "Where the demo keeps its teacher (reused when valid), students and summary.json.");
ABSL_FLAG(bool, quick, false,
          "Demo with a 2-epoch teacher and 3-epoch students (about 2 minutes) to see the whole "
          "pipeline; results are not representative.");
ABSL_FLAG(std::string, teacher_arch, "cnn", "Demo teacher architecture: mlp or cnn.");
ABSL_FLAG(std::vector<std::string>, teacher_hidden, std::vector<std::string>({"32", "64", "128"}),
          "Demo teacher hidden widths (mlp: e.g. 1200,1200 as in Hinton et al.; cnn: "
          "conv1,conv2,fc).");
ABSL_FLAG(double, teacher_dropout, 0.5, "Demo teacher dropout after each hidden layer.");
ABSL_FLAG(double, teacher_input_dropout, 0.0, "Demo teacher input dropout (mlp).");
ABSL_FLAG(int64_t, teacher_jitter, 0, "Demo teacher input jitter in pixels.");
ABSL_FLAG(int64_t, teacher_epochs, 10, "Demo teacher epochs.");
ABSL_FLAG(double, teacher_lr, 1e-3, "Demo teacher peak learning rate.");
ABSL_FLAG(std::string, teacher_mode, "remote",
          "Demo: remote distills over gRPC from a `retort teacher serve` process on loopback; "
          "local calls the teacher in this process.");

namespace retort::cli {

const std::vector<std::string> kDataFlags = {"data_dir", "validation_size", "train_limit",
                                             "threads", "seed"};
const std::vector<std::string> kModelFlags = {"arch", "hidden", "dropout", "input_dropout"};
const std::vector<std::string> kLoopFlags = {"batch_size",
                                             "optimizer",
                                             "lr",
                                             "momentum",
                                             "weight_decay",
                                             "warmup",
                                             "min_lr_ratio",
                                             "clip_grad_norm",
                                             "out_dir",
                                             "resume",
                                             "overwrite",
                                             "checkpoint_every_steps",
                                             "keep_checkpoints",
                                             "log_every_steps",
                                             "backend",
                                             "dist_timeout",
                                             "bucket_mb",
                                             "grad_accum_steps",
                                             "stop_signal",
                                             "testonly_crash_while_checkpointing_step",
                                             "device"};
// Defined after kLoopFlags in this file, so built from it.
const std::vector<std::string> kTrainingFlags = [] {
  std::vector<std::string> flags = {"epochs", "jitter", "stop_after_steps"};
  flags.insert(flags.end(), kLoopFlags.begin(), kLoopFlags.end());
  return flags;
}();
const std::vector<std::string> kDistillFlags = {"teacher",          "temperature",    "alpha",
                                                "teacher_cache_mb", "feature_weight", "match",
                                                "feature_loss",     "adapter"};
const std::vector<std::string> kRemoteTeacherFlags = {"teachers",
                                                      "teacher_wait",
                                                      "teacher_attempt_timeout",
                                                      "teacher_keepalive",
                                                      "teacher_prefetch",
                                                      "teacher_address",
                                                      "teacher_output",
                                                      "teacher_top_k",
                                                      "teacher_value_dtype",
                                                      "teacher_tls_ca",
                                                      "teacher_tls_cert",
                                                      "teacher_tls_key",
                                                      "teacher_tls_server_name",
                                                      "teacher_token_file",
                                                      "teacher_insecure_token",
                                                      "teacher_connect_timeout"};

absl::Status ApplyThreadsFlag() {
  int32_t threads = absl::GetFlag(FLAGS_threads);
  if (threads < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--threads must be >= 0, got ", threads));
  }
  const int32_t cores = static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
  if (threads == 0) threads = cores;
  SetIntraOpThreads(threads);
  int32_t blas = absl::GetFlag(FLAGS_blas_threads);
  if (blas < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--blas_threads must be >= -1 (-1: auto, 0: every core), got ", blas));
  }
  if (blas == 0) blas = cores;
  if (blas == -1) {
    // Ranks of one job on this machine share its cores.
    int32_t local_ranks = 1;
    const char* local = std::getenv("LOCAL_WORLD_SIZE");
    if (local == nullptr) local = std::getenv("SLURM_NTASKS_PER_NODE");
    if (local != nullptr && !absl::SimpleAtoi(local, &local_ranks)) local_ranks = 1;
    blas = std::max(1, cores / std::max(1, local_ranks));
  }
  SetBlasThreads(blas);
  return absl::OkStatus();
}

absl::Status ApplyCpuCacheFlag() {
  const int64_t mb = absl::GetFlag(FLAGS_cpu_cache_mb);
  if (mb < 0 || mb > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--cpu_cache_mb must be between 0 and 2^30 MiB, got ", mb));
  }
  if (mb == 0) return absl::OkStatus();
  CachingCpuAllocator::Options options;
  options.max_cached_bytes = static_cast<size_t>(mb) << 20;
  return UseCachingCpuAllocator(options);
}

data::FashionMnistOptions DataOptionsFromFlags() {
  data::FashionMnistOptions options;
  options.dir = absl::GetFlag(FLAGS_data_dir);
  options.validation_size = absl::GetFlag(FLAGS_validation_size);
  options.train_limit = absl::GetFlag(FLAGS_train_limit);
  return options;
}

absl::StatusOr<models::ModelSpec> ModelSpecFrom(const std::string& flag_prefix,
                                                const std::string& arch,
                                                const std::vector<std::string>& hidden,
                                                double dropout, double input_dropout) {
  models::ModelSpec spec;
  absl::StatusOr<models::Architecture> architecture = models::ParseArchitecture(arch);
  if (!architecture.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag_prefix, "arch: ", architecture.status().message()));
  }
  spec.architecture = *architecture;
  spec.hidden.clear();
  for (const std::string& item : hidden) {
    int64_t width = 0;
    if (!absl::SimpleAtoi(item, &width)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag_prefix, "hidden: '", item, "' is not an integer width"));
    }
    spec.hidden.push_back(width);
  }
  spec.dropout = dropout;
  spec.input_dropout = input_dropout;
  absl::Status valid = spec.Validate();
  if (!valid.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag_prefix, "arch/hidden/dropout: ", valid.message()));
  }
  return spec;
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& flag, const std::string& path) {
  if (path.empty()) return std::string();
  RETORT_ASSIGN_OR_RETURN(std::string contents, ReadFileForFlag(flag, path));
  std::string token(absl::StripAsciiWhitespace(contents));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " ", path, " is empty"));
  }
  return token;
}

absl::StatusOr<client::RemoteTeacherClient::Options> RemoteTeacherOptionsFromFlags(
    const std::string& address) {
  client::RemoteTeacherClient::Options o;
  o.address = address;
  RETORT_ASSIGN_OR_RETURN(o.output,
                          teacher::OutputSpec::Parse(absl::GetFlag(FLAGS_teacher_output),
                                                     absl::GetFlag(FLAGS_teacher_top_k),
                                                     absl::GetFlag(FLAGS_teacher_value_dtype)));
  o.channel.tls_ca_path = absl::GetFlag(FLAGS_teacher_tls_ca);
  o.channel.tls_cert_path = absl::GetFlag(FLAGS_teacher_tls_cert);
  o.channel.tls_key_path = absl::GetFlag(FLAGS_teacher_tls_key);
  o.channel.tls_server_name = absl::GetFlag(FLAGS_teacher_tls_server_name);
  o.channel.allow_insecure_token = absl::GetFlag(FLAGS_teacher_insecure_token);
  RETORT_ASSIGN_OR_RETURN(
      o.channel.auth_token,
      ReadTokenFile("teacher_token_file", absl::GetFlag(FLAGS_teacher_token_file)));
  const double connect = absl::GetFlag(FLAGS_teacher_connect_timeout);
  if (!(connect > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--teacher_connect_timeout must be positive, got ", connect));
  }
  o.connect_timeout = absl::Seconds(connect);
  const double keepalive = absl::GetFlag(FLAGS_teacher_keepalive);
  if (!(keepalive >= 5)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--teacher_keepalive must be at least 5 seconds (servers drop clients that ping more "
        "often), got ",
        keepalive));
  }
  o.channel.keepalive_time = absl::Seconds(keepalive);
  o.channel.keepalive_timeout = absl::Seconds(keepalive / 2);
  return o;
}

absl::StatusOr<client::TeacherPoolClient::Options> TeacherPoolOptionsFromFlags(
    const std::string& target) {
  client::TeacherPoolClient::Options o;
  RETORT_ASSIGN_OR_RETURN(o.resolver, client::CreateEndpointResolver(target, "teachers"));
  RETORT_ASSIGN_OR_RETURN(o.endpoint, RemoteTeacherOptionsFromFlags(target));
  o.connect_timeout = o.endpoint.connect_timeout;
  const double wait = absl::GetFlag(FLAGS_teacher_wait);
  const double attempt = absl::GetFlag(FLAGS_teacher_attempt_timeout);
  if (!(wait > 0) || !(attempt > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--teacher_wait and --teacher_attempt_timeout must be positive, got ", wait,
                     " and ", attempt));
  }
  o.teacher_wait = absl::Seconds(wait);
  o.attempt_timeout = absl::Seconds(attempt);
  return o;
}

absl::StatusOr<std::shared_ptr<distributed::Communicator>> CommunicatorFromFlags() {
  const std::string backend = absl::GetFlag(FLAGS_backend);
  if (backend != "auto" && backend != "gloo" && backend != "nccl") {
    return absl::InvalidArgumentError(
        absl::StrCat("--backend must be auto, gloo or nccl, got '", backend, "'"));
  }
  RETORT_ASSIGN_OR_RETURN(distributed::Rendezvous rendezvous,
                          distributed::Rendezvous::FromEnvironment());
  if (rendezvous.world_size == 1) return std::shared_ptr<distributed::Communicator>();
  if (backend == "nccl") {
    return absl::FailedPreconditionError(
        "--backend=nccl needs a LibTorch built with CUDA; this build's LibTorch is CPU-only: "
        "use --backend=gloo");
  }
  const double timeout = absl::GetFlag(FLAGS_dist_timeout);
  if (!(timeout > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--dist_timeout must be positive, got ", timeout));
  }
  distributed::C10dCommunicator::Options options;
  options.rendezvous = rendezvous;
  options.timeout = absl::Seconds(timeout);
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<distributed::C10dCommunicator> communicator,
                          distributed::C10dCommunicator::Create(options));
  return std::shared_ptr<distributed::Communicator>(std::move(communicator));
}

absl::StatusOr<std::string> TeacherTargetFromFlags() {
  const std::string teachers = absl::GetFlag(FLAGS_teachers);
  const std::string address = absl::GetFlag(FLAGS_teacher_address);
  if (!teachers.empty() && !address.empty()) {
    return absl::InvalidArgumentError("give --teachers or --teacher_address, not both");
  }
  return teachers.empty() ? address : teachers;
}

trainer::OptimizerOptions OptimizerOptionsFromFlags() {
  trainer::OptimizerOptions o;
  o.kind = absl::GetFlag(FLAGS_optimizer);
  o.learning_rate = absl::GetFlag(FLAGS_lr);
  o.momentum = absl::GetFlag(FLAGS_momentum);
  o.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  o.warmup_fraction = absl::GetFlag(FLAGS_warmup);
  o.min_lr_ratio = absl::GetFlag(FLAGS_min_lr_ratio);
  return o;
}

absl::StatusOr<bool> ResumeFromFlags() {
  const std::string resume = absl::GetFlag(FLAGS_resume);
  if (resume != "auto" && resume != "never") {
    return absl::InvalidArgumentError(
        absl::StrCat("--resume must be auto or never, got '", resume, "'"));
  }
  return resume == "auto";
}

absl::StatusOr<trainer::FeatureMatchOptions> FeatureMatchOptionsFromFlags() {
  trainer::FeatureMatchOptions o;
  o.weight = absl::GetFlag(FLAGS_feature_weight);
  o.match = absl::GetFlag(FLAGS_match);
  RETORT_ASSIGN_OR_RETURN(
      o.loss, trainer::FeatureMatchOptions::ParseLoss(absl::GetFlag(FLAGS_feature_loss)));
  RETORT_ASSIGN_OR_RETURN(o.nonlinear,
                          trainer::FeatureMatchOptions::ParseAdapter(absl::GetFlag(FLAGS_adapter)));
  RETORT_RETURN_IF_ERROR(o.Validate());
  return o;
}

absl::StatusOr<int64_t> BucketBytesFromFlags() {
  const double bucket_mb = absl::GetFlag(FLAGS_bucket_mb);
  if (!(bucket_mb >= 0.01 && bucket_mb <= 4096)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--bucket_mb must be in [0.01, 4096], got ", bucket_mb));
  }
  return static_cast<int64_t>(bucket_mb * (1 << 20));
}

std::function<void(int64_t)> CrashWhileCheckpointingFromFlags() {
  const int64_t crash_step = absl::GetFlag(FLAGS_testonly_crash_while_checkpointing_step);
  if (crash_step <= 0) return nullptr;
  return [crash_step](int64_t step) {
    if (step != crash_step) return;
    std::fprintf(stderr, "[retort] crashing while writing the checkpoint of step %lld (testing)\n",
                 static_cast<long long>(step));
    std::raise(SIGKILL);
  };
}

absl::StatusOr<std::function<bool()>> StopRequestedFromFlags() {
  std::vector<int> signals = {SIGTERM, SIGINT};
  const std::string extra = absl::GetFlag(FLAGS_stop_signal);
  if (!extra.empty()) {
    absl::StatusOr<int> parsed = ParseSignal(extra);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--stop_signal: ", parsed.status().message()));
    }
    signals.push_back(*parsed);
  }
  RETORT_RETURN_IF_ERROR(InstallStopSignals(signals));
  return std::function<bool()>([] { return StopSignalReceived() != 0; });
}

absl::Status PreemptedAfter(const std::string& label, int64_t step, const std::string& checkpoint) {
  return PreemptedError(absl::StrCat(label, " stopped on ", SignalName(StopSignalReceived()),
                                     " after step ", step, "; checkpoint ", checkpoint,
                                     "; continue with --resume=auto"));
}

absl::StatusOr<torch::Device> DeviceFromFlags() {
  const std::string name = absl::GetFlag(FLAGS_device);
  absl::StatusOr<torch::Device> device = TorchCall("--device", [&] { return torch::Device(name); });
  if (!device.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--device='", name, "' is not a device; use cpu, cuda or cuda:N"));
  }
  return *device;
}

absl::StatusOr<trainer::ClassifierTrainerOptions> TrainerOptionsFromFlags() {
  trainer::ClassifierTrainerOptions o;
  o.init_from = absl::GetFlag(FLAGS_init_from);
  if (!o.init_from.empty()) {
    // The checkpoint's own architecture (a pruned model's smaller one).
    absl::StatusOr<models::LoadedCheckpoint> loaded = models::ReadCheckpoint(o.init_from);
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat("--init_from: ", loaded.status().message()));
    }
    o.model = loaded->model->spec();
    std::fprintf(stderr,
                 "[retort] the model starts from %s: %s (--arch, --hidden, --dropout "
                 "come from it)\n",
                 o.init_from.c_str(), o.model.Describe().c_str());
  } else {
    RETORT_ASSIGN_OR_RETURN(
        o.model, ModelSpecFrom("", absl::GetFlag(FLAGS_arch), absl::GetFlag(FLAGS_hidden),
                               absl::GetFlag(FLAGS_dropout), absl::GetFlag(FLAGS_input_dropout)));
  }
  o.optimizer = OptimizerOptionsFromFlags();
  o.loss.temperature = absl::GetFlag(FLAGS_temperature);
  o.loss.alpha = absl::GetFlag(FLAGS_alpha);
  RETORT_ASSIGN_OR_RETURN(o.features, FeatureMatchOptionsFromFlags());
  o.epochs = absl::GetFlag(FLAGS_epochs);
  o.batch_size = absl::GetFlag(FLAGS_batch_size);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.jitter_pixels = absl::GetFlag(FLAGS_jitter);
  RETORT_ASSIGN_OR_RETURN(o.device, DeviceFromFlags());
  o.clip_grad_norm = absl::GetFlag(FLAGS_clip_grad_norm);
  o.out_dir = absl::GetFlag(FLAGS_out_dir);
  RETORT_ASSIGN_OR_RETURN(o.resume, ResumeFromFlags());
  o.keep_checkpoints = absl::GetFlag(FLAGS_keep_checkpoints);
  o.teacher_prefetch = absl::GetFlag(FLAGS_teacher_prefetch);
  o.after_checkpoint_file_written = CrashWhileCheckpointingFromFlags();
  RETORT_ASSIGN_OR_RETURN(o.stop_requested, StopRequestedFromFlags());
  RETORT_ASSIGN_OR_RETURN(o.bucket_bytes, BucketBytesFromFlags());
  o.accumulation_steps = absl::GetFlag(FLAGS_grad_accum_steps);
  o.overwrite = absl::GetFlag(FLAGS_overwrite);
  o.checkpoint_every_steps = absl::GetFlag(FLAGS_checkpoint_every_steps);
  o.log_every_steps = absl::GetFlag(FLAGS_log_every_steps);
  o.stop_after_steps = absl::GetFlag(FLAGS_stop_after_steps);
  RETORT_RETURN_IF_ERROR(o.Validate());
  return o;
}

absl::StatusOr<torch::ScalarType> WeightsDtypeFromFlags() {
  const std::string dtype = absl::GetFlag(FLAGS_weights_dtype);
  if (dtype == "float32") return torch::kFloat32;
  if (dtype == "bfloat16") return torch::kBFloat16;
  if (dtype == "float16") return torch::kFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("--weights_dtype=", dtype, ": use float32, bfloat16 or float16"));
}

}  // namespace retort::cli
