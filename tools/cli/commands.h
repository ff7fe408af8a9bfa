// The retort subcommands. Each Run* function reads its flags (already parsed)
// and returns a Status; main prints a failed Status as one line.
#ifndef RETORT_TOOLS_CLI_COMMANDS_H_
#define RETORT_TOOLS_CLI_COMMANDS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace retort::cli {

struct Command {
  std::string name;
  std::string summary;
  std::vector<std::string> flags;  // shown by `retort help <name>`
  absl::Status (*run)() = nullptr;
  // Commands that take a command line of their own after `--` (launch).
  absl::Status (*run_with_args)(const std::vector<std::string>& args) = nullptr;
};

absl::Status RunTrain();
absl::Status RunDistill();
absl::Status RunChain();
absl::Status RunLmChain();
absl::Status RunEval();
absl::Status RunDemo();
absl::Status RunTeacherServe();
absl::Status RunTeacherDump();
absl::Status RunBench();
absl::Status RunBenchPool();
absl::Status RunBenchDdp();
absl::Status RunBenchLm();
absl::Status RunBenchGenerate();
absl::Status RunDataPrepare();
absl::Status RunLmTrain();
absl::Status RunLmEval();
absl::Status RunGenerate();
absl::Status RunPrune();
absl::Status RunQuantize();
absl::Status RunSlice();
absl::Status RunExport();
absl::Status RunModelInit();
absl::Status RunLaunch(const std::vector<std::string>& args);

// Every command, in the order `retort help` lists them.
const std::vector<Command>& Commands();

}  // namespace retort::cli

#endif  // RETORT_TOOLS_CLI_COMMANDS_H_
