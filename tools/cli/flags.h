// The retort binary's flags and the one place that turns them into Options.
#ifndef RETORT_TOOLS_CLI_FLAGS_H_
#define RETORT_TOOLS_CLI_FLAGS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/internal/parse.h"
#include "absl/status/statusor.h"
#include "client/remote_teacher_client.h"
#include "client/teacher_pool_client.h"
#include "data/fashion_mnist.h"
#include "models/model_spec.h"
#include "trainer/classifier/classifier_trainer.h"

// The student language model --model describes when it is left empty (and
// no --init_from gives a shape).
inline constexpr char kDefaultLmModel[] = "d=128,layers=2,heads=4,ffn=344,tied";

ABSL_DECLARE_FLAG(std::string, data_dir);
ABSL_DECLARE_FLAG(int64_t, max_shard_bytes);
ABSL_DECLARE_FLAG(std::string, weights_dtype);
ABSL_DECLARE_FLAG(std::string, init_from);
ABSL_DECLARE_FLAG(int64_t, validation_size);
ABSL_DECLARE_FLAG(int64_t, train_limit);
ABSL_DECLARE_FLAG(int32_t, threads);
ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(std::string, arch);
ABSL_DECLARE_FLAG(std::vector<std::string>, hidden);
ABSL_DECLARE_FLAG(double, dropout);
ABSL_DECLARE_FLAG(double, input_dropout);
ABSL_DECLARE_FLAG(int64_t, epochs);
ABSL_DECLARE_FLAG(double, lr);
ABSL_DECLARE_FLAG(int64_t, jitter);
ABSL_DECLARE_FLAG(std::string, out_dir);
ABSL_DECLARE_FLAG(std::string, teacher);
ABSL_DECLARE_FLAG(double, temperature);
ABSL_DECLARE_FLAG(double, alpha);
ABSL_DECLARE_FLAG(int64_t, teacher_cache_mb);
ABSL_DECLARE_FLAG(std::string, checkpoint);
ABSL_DECLARE_FLAG(std::string, split);
ABSL_DECLARE_FLAG(std::string, json_out);
ABSL_DECLARE_FLAG(std::string, work_dir);
ABSL_DECLARE_FLAG(bool, quick);
ABSL_DECLARE_FLAG(std::string, teacher_arch);
ABSL_DECLARE_FLAG(std::vector<std::string>, teacher_hidden);
ABSL_DECLARE_FLAG(double, teacher_dropout);
ABSL_DECLARE_FLAG(double, teacher_input_dropout);
ABSL_DECLARE_FLAG(int64_t, teacher_jitter);
ABSL_DECLARE_FLAG(int64_t, teacher_epochs);
ABSL_DECLARE_FLAG(double, teacher_lr);
ABSL_DECLARE_FLAG(std::string, teacher_address);
ABSL_DECLARE_FLAG(std::string, teachers);
ABSL_DECLARE_FLAG(std::string, teacher_mode);
ABSL_DECLARE_FLAG(int64_t, batch_size);
ABSL_DECLARE_FLAG(double, clip_grad_norm);
ABSL_DECLARE_FLAG(bool, overwrite);
ABSL_DECLARE_FLAG(int32_t, keep_checkpoints);
ABSL_DECLARE_FLAG(int64_t, checkpoint_every_steps);
ABSL_DECLARE_FLAG(int64_t, log_every_steps);
ABSL_DECLARE_FLAG(int64_t, stop_after_steps);
ABSL_DECLARE_FLAG(int64_t, grad_accum_steps);
ABSL_DECLARE_FLAG(double, feature_weight);
ABSL_DECLARE_FLAG(int64_t, teacher_prefetch);
ABSL_DECLARE_FLAG(std::string, teacher_value_dtype);

namespace retort::cli {

// Flags shared by the commands, grouped for `retort help`.
extern const std::vector<std::string> kDataFlags;
extern const std::vector<std::string> kModelFlags;
// The training loop's flags (TrainingLoopOptions), which every training
// command takes.
extern const std::vector<std::string> kLoopFlags;
extern const std::vector<std::string> kTrainingFlags;  // classifiers: kLoopFlags and theirs
extern const std::vector<std::string> kDistillFlags;
extern const std::vector<std::string> kRemoteTeacherFlags;  // --teacher_address and its client
extern const std::vector<std::string> kTeacherServeFlags;   // retort teacher serve
extern const std::vector<std::string> kBenchFlags;          // retort bench serve
extern const std::vector<std::string> kBenchPoolFlags;      // retort bench pool
extern const std::vector<std::string> kBenchDdpFlags;       // retort bench ddp
extern const std::vector<std::string> kBenchLmFlags;        // retort bench lm
extern const std::vector<std::string> kBenchGenerateFlags;  // retort bench generate
extern const std::vector<std::string> kLaunchFlags;         // retort launch

// Sets LibTorch's intra-op thread count from --threads (0: all cores).
absl::Status ApplyThreadsFlag();

// Makes a CachingCpuAllocator holding up to --cpu_cache_mb MiB LibTorch's CPU
// allocator (nothing for 0). Call once, before the command makes tensors.
absl::Status ApplyCpuCacheFlag();

data::FashionMnistOptions DataOptionsFromFlags();

// Builds a model spec from an architecture name, a width list and dropouts;
// errors name the flag (`flag_prefix` + "hidden" and so on).
absl::StatusOr<models::ModelSpec> ModelSpecFrom(const std::string& flag_prefix,
                                                const std::string& arch,
                                                const std::vector<std::string>& hidden,
                                                double dropout, double input_dropout);

// A bearer token from the file named by --`flag` (whitespace trimmed); empty
// when `path` is. Errors name the flag: unreadable or empty files.
absl::StatusOr<std::string> ReadTokenFile(const std::string& flag, const std::string& path);

// The remote-teacher client flags (--teacher_output, --teacher_tls_ca, ...)
// for a teacher server at `address`.
absl::StatusOr<client::RemoteTeacherClient::Options> RemoteTeacherOptionsFromFlags(
    const std::string& address);

// The pool flags (--teacher_wait, ...) and the client flags for the teachers
// at `target` (--teachers syntax).
absl::StatusOr<client::TeacherPoolClient::Options> TeacherPoolOptionsFromFlags(
    const std::string& target);

// The communicator of the ranks a launcher started (torchrun or Slurm
// environment, --backend, --dist_timeout); null when this process is alone.
absl::StatusOr<std::shared_ptr<distributed::Communicator>> CommunicatorFromFlags();

// --teachers or --teacher_address (not both); empty when neither is set.
absl::StatusOr<std::string> TeacherTargetFromFlags();

// --optimizer, --lr, --momentum, --weight_decay, --warmup, --min_lr_ratio.
trainer::OptimizerOptions OptimizerOptionsFromFlags();

// --feature_weight, --match, --feature_loss, --adapter.
absl::StatusOr<trainer::FeatureMatchOptions> FeatureMatchOptionsFromFlags();

// --resume: true for auto, false for never, an error otherwise.
absl::StatusOr<bool> ResumeFromFlags();

// The model and training flags (--arch, --hidden, --epochs, --lr, ...).
absl::StatusOr<trainer::ClassifierTrainerOptions> TrainerOptionsFromFlags();

// The flag's value when given on the command line (or in a --flagfile),
// else `fallback`: how a command whose Options default differently from the
// shared flag's default (lm train's batch size and clipping) keeps its own.
template <typename T>
T FlagOr(const absl::Flag<T>& flag, T fallback) {
  return absl::flags_internal::WasPresentOnCommandLine(absl::GetFlagReflectionHandle(flag).Name())
             ? absl::GetFlag(flag)
             : fallback;
}

// --device as a torch::Device (INVALID_ARGUMENT for a name LibTorch does
// not parse; whether it can be used is the task's check).
absl::StatusOr<torch::Device> DeviceFromFlags();

// --bucket_mb in bytes (INVALID_ARGUMENT outside [0.01, 4096] MB).
absl::StatusOr<int64_t> BucketBytesFromFlags();

// --weights_dtype as a LibTorch dtype (float32, bfloat16, float16), or
// INVALID_ARGUMENT naming the flag.
absl::StatusOr<torch::ScalarType> WeightsDtypeFromFlags();

// The training loop's test seam from --testonly_crash_while_checkpointing_step
// (SIGKILL after this rank wrote its file of that step's checkpoint); null
// when the flag is 0.
std::function<void(int64_t)> CrashWhileCheckpointingFromFlags();

// Installs the stop-signal handlers (SIGTERM, SIGINT and --stop_signal) and
// returns the poll the training loop calls after every step.
absl::StatusOr<std::function<bool()>> StopRequestedFromFlags();

// The error a command returns for a run that stopped on a signal after its
// checkpoint (the command line exits with kPreemptedExitCode).
absl::Status PreemptedAfter(const std::string& label, int64_t step, const std::string& checkpoint);

}  // namespace retort::cli

#endif  // RETORT_TOOLS_CLI_FLAGS_H_
