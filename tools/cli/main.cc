// retort: one binary, many commands.
//
//   retort <command> [--flag=value ...] [--flagfile=job.flags]
//   retort help [command]
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/internal/parse.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/allocator_tuning.h"
#include "common/stop_signal.h"
#include "tools/cli/commands.h"
#include "tools/cli/flags.h"

namespace retort::cli {
namespace {

std::vector<std::string> Concat(std::initializer_list<std::vector<std::string>> groups) {
  std::vector<std::string> all;
  for (const auto& g : groups) all.insert(all.end(), g.begin(), g.end());
  return all;
}

// The flags `lm train` and `lm chain` share: the loop's and the language
// model's.
std::vector<std::string> LmTrainingFlags() {
  return Concat({{"data",
                  "seq_len",
                  "model",
                  "steps",
                  "seed",
                  "teacher",
                  "teacher_cache",
                  "teacher_samples",
                  "top_k",
                  "temperature",
                  "alpha",
                  "divergence",
                  "skew",
                  "feature_weight",
                  "match",
                  "feature_loss",
                  "adapter",
                  "eval_every",
                  "eval_sequences",
                  "teacher_prefetch",
                  "threads",
                  "js_beta",
                  "on_policy_fraction",
                  "prompts",
                  "prompt_tokens",
                  "rollout_tokens",
                  "rollout_temperature",
                  "rollout_top_k",
                  "rollout_top_p",
                  "on_policy_loss",
                  "on_policy_candidates",
                  "max_staleness"},
                 kLoopFlags});
}

std::vector<std::string> Without(const std::vector<std::string>& flags,
                                 const std::vector<std::string>& drop) {
  std::vector<std::string> kept;
  for (const std::string& f : flags) {
    if (std::find(drop.begin(), drop.end(), f) == drop.end()) kept.push_back(f);
  }
  return kept;
}

// Language models ask for top-k with --top_k; the classifier's teacher
// output flags mean nothing there.
std::vector<std::string> LmRemoteTeacherFlags() {
  return Without(kRemoteTeacherFlags, {"teacher_output", "teacher_top_k", "teacher_prefetch"});
}

// Flags every command takes (absl's own).
bool IsGlobalFlag(absl::string_view name) {
  return name == "flagfile" || name == "fromenv" || name == "tryfromenv" || name == "undefok" ||
         absl::StartsWith(name, "help") || name == "version" || name == "only_check_args";
}

// OK unless a flag given on the command line (or in a --flagfile) is not
// one `command` takes: then INVALID_ARGUMENT naming it and the commands that
// take it, so a mistyped or misplaced flag never trains silently.
absl::Status CheckFlagsTaken(const Command& command) {
  std::vector<std::string> refused;
  for (const auto& [name, unused_flag] : absl::GetAllFlags()) {
    if (!absl::flags_internal::WasPresentOnCommandLine(name) || IsGlobalFlag(name)) continue;
    if (std::find(command.flags.begin(), command.flags.end(), name) != command.flags.end()) {
      continue;
    }
    refused.emplace_back(name);
  }
  if (refused.empty()) return absl::OkStatus();
  std::sort(refused.begin(), refused.end());
  const std::string& name = refused.front();
  std::vector<std::string> takers;
  for (const Command& c : Commands()) {
    if (std::find(c.flags.begin(), c.flags.end(), name) != c.flags.end()) {
      takers.push_back(absl::StrCat("`retort ", c.name, "`"));
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "retort ", command.name, " does not take --", name,
      takers.empty() ? std::string("; no command does")
                     : absl::StrCat("; it is a flag of ", absl::StrJoin(takers, ", ")),
      refused.size() > 1
          ? absl::StrCat(" (nor --", absl::StrJoin(refused.begin() + 1, refused.end(), ", --"), ")")
          : "",
      "; see `retort help ", command.name, "`"));
}

}  // namespace

const std::vector<Command>& Commands() {
  static std::vector<Command>* commands = new std::vector<Command>{
      {"train", "Train a classifier on Fashion-MNIST with hard labels (e.g. a teacher).",
       Concat({{"init_from"}, kModelFlags, kTrainingFlags, kDataFlags}), &RunTrain},
      {"distill",
       "Train a student from a teacher (a checkpoint, or servers with --teachers) with "
       "the distillation loss.",
       Concat({{"init_from"},
               kDistillFlags,
               kRemoteTeacherFlags,
               kModelFlags,
               kTrainingFlags,
               kDataFlags}),
       &RunDistill},
      {"chain",
       "Teacher-assistant chain: distill the teacher into an intermediate-size assistant "
       "(OUT/assistant), then the student from the assistant (OUT/student); chain.json.",
       Concat({{"assistant_arch", "assistant_hidden", "assistant_dropout", "assistant_epochs"},
               kDistillFlags,
               kRemoteTeacherFlags,
               kModelFlags,
               kTrainingFlags,
               kDataFlags}),
       &RunChain},
      {"eval",
       "Evaluate a checkpoint on the validation or test set; a language model (a Llama "
       "directory) on --data's validation tokens: perplexity, top-1, teacher agreement; or, "
       "with --prompts, exact and prefix match of its greedy answers and the teacher's NLL of "
       "its samples.",
       Concat({{"checkpoint", "split", "json_out", "data", "seq_len", "eval_sequences",
                "batch_size", "teacher", "teachers", "top_k", "prompts", "max_new_tokens", "seed",
                "rollout_temperature"},
               kDataFlags}),
       &RunEval},
      {"data prepare",
       "Tokenize text (default: the King James Bible) with --tokenizer (a tokenizer.json or "
       "SentencePiece .model) or a SentencePiece BPE trained on it, and write "
       "train/validation token shards.",
       {"text", "out_dir", "tokenizer", "vocab_size", "validation_fraction", "seed"},
       &RunDataPrepare},
      {"lm train",
       "Train a Llama-family language model on prepared tokens, from scratch or distilled "
       "from a teacher (--teacher DIR in process, or --teachers servers) with top-k targets.",
       Concat({{"init_from", "init_layers", "stop_after_steps"},
               LmTrainingFlags(),
               LmRemoteTeacherFlags()}),
       &RunLmTrain},
      {"lm chain",
       "Teacher-assistant chain for language models: distill --teacher (a Llama directory, "
       "or --teachers) into --assistant_model (OUT/assistant), then --model from the "
       "assistant (OUT/student); chain.json.",
       Concat({{"assistant_model", "assistant_steps"}, LmTrainingFlags(), LmRemoteTeacherFlags()}),
       &RunLmChain},
      {"generate",
       "Sample text from a language-model checkpoint (a Llama directory).",
       {"checkpoint", "prompt", "max_new_tokens", "sample_temperature", "sample_top_k",
        "sample_top_p", "seed", "logits_out", "threads"},
       &RunGenerate},
      {"prune",
       "Prune a checkpoint: zero a share of each matrix's weights (magnitude or "
       "activation-aware), or remove whole units (--structured: MLP neurons, attention heads, "
       "CNN channels); before/after table.",
       Concat({{"checkpoint", "method", "sparsity", "structured", "fraction", "heads_fraction",
                "multiple_of", "calibration_sequences", "out_dir", "data", "seq_len",
                "eval_sequences", "batch_size", "bench_tokens", "threads"},
               kDataFlags}),
       &RunPrune},
      {"slice",
       "Slice a Llama checkpoint with SliceGPT: rotate the residual stream by its principal "
       "components on calibration tokens and delete --fraction of its width; before/after table.",
       {"checkpoint", "fraction", "multiple_of", "calibration_sequences", "out_dir", "data",
        "seq_len", "eval_sequences", "batch_size", "bench_tokens", "threads"},
       &RunSlice},
      {"quantize",
       "Quantize a checkpoint's weights (int8 per-channel, int4 groups) and print a before/after "
       "table: parameters, bytes, perplexity or test accuracy, inference speed.",
       Concat({{"checkpoint", "quantize", "group_size", "quantize_embeddings", "out_dir", "data",
                "seq_len", "eval_sequences", "batch_size", "bench_tokens", "threads"},
               kDataFlags}),
       &RunQuantize},
      {"export",
       "Export a language-model checkpoint: GGUF for llama.cpp (f32, f16, q8_0, q4_0) or "
       "safetensors + config.json for transformers.",
       {"checkpoint", "format", "gguf_type", "weights_dtype", "max_shard_bytes", "out", "threads"},
       &RunExport},
      {"model init",
       "Write a randomly initialised checkpoint of a named published shape (llama-3.2-1b, "
       "qwen3-0.6b, ...) or a tiny one, for tests and benchmarks.",
       {"shape", "out_dir", "weights_dtype", "max_shard_bytes", "tokenizer_file", "seed",
        "threads"},
       &RunModelInit},
      {"demo",
       "Teacher, scratch student and distilled student end to end; prints a table and "
       "writes summary.json.",
       Concat({{"work_dir", "quick", "teacher_mode", "teacher_arch", "teacher_hidden",
                "teacher_dropout", "teacher_input_dropout", "teacher_jitter", "teacher_epochs",
                "teacher_lr"},
               kDistillFlags,
               kModelFlags,
               kTrainingFlags,
               kDataFlags}),
       &RunDemo},
      {"teacher serve",
       "Serve a teacher checkpoint or TorchScript module over gRPC until SIGTERM/SIGINT.",
       kTeacherServeFlags, &RunTeacherServe},
      {"teacher dump",
       "Run a language-model teacher (--teacher DIR, or --teachers servers) over --data's "
       "token sequences once and write a teacher-logit cache (--out_dir) that `lm train "
       "--teacher_cache` reads instead of the teacher; resumes an interrupted dump. Under "
       "torchrun or `retort launch`, the ranks share the shards.",
       Concat({{"data", "seq_len", "temperature", "out_dir", "overwrite", "teacher", "batch_size",
                "cache_encoding", "cache_top_k", "cache_exact", "cache_value_bits", "cache_samples",
                "cache_shard_sequences", "threads", "blas_threads", "backend", "dist_timeout"},
               LmRemoteTeacherFlags(),
               {"teacher_prefetch"}}),
       &RunTeacherDump},
      {"bench serve",
       "Benchmark a teacher server: gRPC vs in-process rows/s, bytes per row, latency under "
       "concurrent streams, dynamic batching on vs off.",
       kBenchFlags, &RunBench},
      {"bench pool",
       "Benchmark distillation against a teacher pool: student samples/s vs hard labels and "
       "the in-process teacher, prefetch on/off, stall per step, failover times.",
       kBenchPoolFlags, &RunBenchPool},
      {"bench ddp",
       "Benchmark data-parallel ranks: 2 ranks vs 1 rank samples/s on this machine and the "
       "share of step time spent communicating.",
       kBenchDdpFlags, &RunBenchDdp},
      {"bench lm",
       "Benchmark language-model throughput: the matmul peak, the teacher's forward pass and "
       "server (tokens/s, MFU, bytes per token), the student's training step with and without "
       "a teacher.",
       kBenchLmFlags, &RunBenchLm},
      {"bench generate",
       "Benchmark generation: tokens/s with the key/value cache against recomputing the "
       "prefix, greedy, on the same model (tools/bench/generate.sh adds a PyTorch loop).",
       kBenchGenerateFlags, &RunBenchGenerate},
      {"launch",
       "Start a teacher pool and --nproc trainer ranks on this machine: retort launch "
       "[flags] -- distill|train|lm train [flags].",
       kLaunchFlags, nullptr, &RunLaunch},
  };
  // Every command that sets LibTorch's threads sets BLAS's too
  // (ApplyThreadsFlag), and keeps freed tensor buffers for reuse, except the
  // server, whose resident memory is held to its weights (docs/performance.md).
  static const bool blas_flags_added = [] {
    for (Command& c : *commands) {
      if (std::find(c.flags.begin(), c.flags.end(), "threads") != c.flags.end()) {
        c.flags.push_back("blas_threads");
        if (c.name != "teacher serve") c.flags.push_back("cpu_cache_mb");
      }
    }
    return true;
  }();
  (void)blas_flags_added;
  return *commands;
}

namespace {

void PrintUsage() {
  std::printf(
      "retort: knowledge distillation, teacher to compact student.\n\n"
      "usage: retort <command> [--flag=value ...] [--flagfile=FILE]\n\ncommands:\n");
  for (const Command& c : Commands()) {
    std::printf("  %-14s %s\n", c.name.c_str(), c.summary.c_str());
  }
  std::printf("  %-14s %s\n", "help", "This list, or `retort help <command>` for its flags.");
  std::printf("\n--flagfile=FILE reads flags (one --flag=value a line) from FILE.\n");
}

void PrintCommandHelp(const Command& command) {
  std::printf("retort %s: %s\n\nflags:\n", command.name.c_str(), command.summary.c_str());
  for (const std::string& name : command.flags) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) continue;
    std::printf("  --%s (default: %s)\n      %s\n", name.c_str(),
                flag->DefaultValue().empty() ? "\"\"" : flag->DefaultValue().c_str(),
                flag->Help().c_str());
  }
  std::printf("  --flagfile=FILE\n      Read flags from FILE, one --flag=value a line.\n");
}

const Command* FindCommand(const std::string& name) {
  for (const Command& c : Commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

bool WantsHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h") ||
        !std::strcmp(argv[i], "--helpfull")) {
      return true;
    }
  }
  return false;
}

}  // namespace
}  // namespace retort::cli

int main(int argc, char** argv) {
  using retort::cli::Command;
  // A write to a connection the peer closed (a data-parallel rank that died,
  // a teacher that went away) must fail with EPIPE, not kill this process
  // by SIGPIPE without a word: Gloo writes without MSG_NOSIGNAL, and a rank
  // whose peer was SIGKILLed mid-step died of it (exit -13) instead of
  // saying "restart them all with --resume=auto" (found by the chaos soak;
  // Python, and so torchrun's usual workers, ignore SIGPIPE the same way).
  std::signal(SIGPIPE, SIG_IGN);
  retort::TuneAllocatorForTensors();
  absl::SetProgramUsageMessage("retort <command> [flags]; see `retort help`");
  if (argc < 2 || !std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help") ||
      !std::strcmp(argv[1], "-h")) {
    if (argc >= 3 && !std::strcmp(argv[1], "help")) {
      const Command* command =
          argc >= 4 ? retort::cli::FindCommand(std::string(argv[2]) + " " + argv[3]) : nullptr;
      if (command == nullptr) command = retort::cli::FindCommand(argv[2]);
      if (command == nullptr) {
        std::fprintf(stderr, "retort: unknown command '%s'; see `retort help`\n", argv[2]);
        return 2;
      }
      retort::cli::PrintCommandHelp(*command);
      return 0;
    }
    retort::cli::PrintUsage();
    return argc < 2 ? 2 : 0;
  }
  // Commands are one word (train) or two (teacher serve).
  int words = 1;
  const Command* command = nullptr;
  if (argc >= 3) {
    command = retort::cli::FindCommand(std::string(argv[1]) + " " + argv[2]);
    if (command != nullptr) words = 2;
  }
  if (command == nullptr) command = retort::cli::FindCommand(argv[1]);
  if (command == nullptr) {
    std::fprintf(stderr, "retort: unknown command '%s'; see `retort help`\n", argv[1]);
    return 2;
  }
  if (retort::cli::WantsHelp(argc, argv)) {
    retort::cli::PrintCommandHelp(*command);
    return 0;
  }
  // Parse the flags after the command name; argv[0] stays the program.
  std::vector<char*> args;
  args.push_back(argv[0]);
  for (int i = 1 + words; i < argc; ++i) args.push_back(argv[i]);
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  absl::Status status = retort::cli::CheckFlagsTaken(*command);
  if (!status.ok()) {
    std::fprintf(stderr, "retort %s: error: %s\n", command->name.c_str(),
                 std::string(status.message()).c_str());
    return 2;
  }
  if (std::find(command->flags.begin(), command->flags.end(), "cpu_cache_mb") !=
      command->flags.end()) {
    status = retort::cli::ApplyCpuCacheFlag();
    if (!status.ok()) {
      std::fprintf(stderr, "retort %s: error: %s\n", command->name.c_str(),
                   std::string(status.message()).c_str());
      return 2;
    }
  }
  if (command->run_with_args != nullptr) {
    // Everything after `--` is the command it runs.
    status =
        command->run_with_args(std::vector<std::string>(positional.begin() + 1, positional.end()));
  } else if (positional.size() > 1) {
    std::fprintf(stderr, "retort %s: unexpected argument '%s'; flags look like --name=value\n",
                 command->name.c_str(), positional[1]);
    return 2;
  } else {
    status = command->run();
  }
  if (retort::IsPreempted(status)) {
    std::fprintf(stderr, "retort %s: preempted: %s\n", command->name.c_str(),
                 std::string(status.message()).c_str());
    return retort::kPreemptedExitCode;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "retort %s: error: %s\n", command->name.c_str(),
                 std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
