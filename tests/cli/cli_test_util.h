// Helpers shared by the end-to-end tests of the retort binary: a small
// Fashion-MNIST look-alike on disk, running the binary as a process, and
// data-parallel ranks started the way srun or a Kubernetes Indexed Job
// starts them.
#ifndef RETORT_TESTS_CLI_CLI_TEST_UTIL_H_
#define RETORT_TESTS_CLI_CLI_TEST_UTIL_H_

#include <sys/wait.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>

#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/free_port.h"
#include "common/subprocess.h"

namespace retort::clitest {

struct Result {
  int exit_code;
  std::string out, err;
  int ErrLines() const { return static_cast<int>(std::count(err.begin(), err.end(), '\n')); }
};

inline void WriteIdx(const std::filesystem::path& path, std::vector<uint32_t> dims,
                     const std::vector<uint8_t>& values) {
  std::string bytes = {0, 0, 8, static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) bytes += static_cast<char>((d >> s) & 0xff);
  }
  bytes.append(values.begin(), values.end());
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

// Class c images are bright in row band c, so the task is learnable.
inline void WriteSplit(const std::filesystem::path& dir, const std::string& prefix, int n,
                       uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> images(static_cast<size_t>(n) * 784), labels(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    int label = static_cast<int>(rng() % 10);
    labels[static_cast<size_t>(i)] = static_cast<uint8_t>(label);
    for (int p = 0; p < 784; ++p) {
      int row = p / 28;
      bool band = row >= label * 2 + 4 && row < label * 2 + 7;
      images[static_cast<size_t>(i) * 784 + static_cast<size_t>(p)] =
          static_cast<uint8_t>((band ? 150 : 0) + rng() % 100);
    }
  }
  WriteIdx(dir / (prefix + "-images-idx3-ubyte.gz"), {static_cast<uint32_t>(n), 28, 28}, images);
  WriteIdx(dir / (prefix + "-labels-idx1-ubyte.gz"), {static_cast<uint32_t>(n)}, labels);
}

// `train` training and `test` test images in Fashion-MNIST's file layout.
inline void WriteDataset(const std::filesystem::path& dir, int train, int test) {
  WriteSplit(dir, "train", train, 1);
  WriteSplit(dir, "t10k", test, 2);
}

// Runs `binary args` through the shell, capturing stdout and stderr in
// files under `scratch_dir`.
inline Result RunBinary(const std::string& binary, const std::string& args,
                        const std::filesystem::path& scratch_dir) {
  const std::string out = (scratch_dir / "stdout.txt").string();
  const std::string err = (scratch_dir / "stderr.txt").string();
  const std::string command = binary + " " + args + " >" + out + " 2>" + err;
  const int status = std::system(command.c_str());
  return Result{WIFEXITED(status) ? WEXITSTATUS(status) : -1, ReadFile(out).value_or(""),
                ReadFile(err).value_or("")};
}

// Starts `world` ranks of `binary args` with torchrun's environment
// contract on 127.0.0.1 (no launcher agent), each rank's stderr and stdout
// in <dir>/<name>.rank<r>.err / .out.
inline std::vector<std::unique_ptr<Subprocess>> StartRanks(const std::string& binary,
                                                           const std::string& args,
                                                           const std::filesystem::path& dir,
                                                           const std::string& name, int world = 2) {
  absl::StatusOr<int> port = FreeLoopbackPort();
  EXPECT_TRUE(port.ok()) << port.status();
  std::vector<std::unique_ptr<Subprocess>> ranks;
  for (int rank = 0; rank < world; ++rank) {
    Subprocess::Options o;
    o.argv = {"/bin/sh", "-c", "exec " + binary + " " + args};
    o.env_overrides = {
        {"MASTER_ADDR", "127.0.0.1"},         {"MASTER_PORT", std::to_string(port.value_or(0))},
        {"RANK", std::to_string(rank)},       {"WORLD_SIZE", std::to_string(world)},
        {"LOCAL_RANK", std::to_string(rank)}, {"LOCAL_WORLD_SIZE", std::to_string(world)}};
    o.stderr_path = (dir / (name + ".rank" + std::to_string(rank) + ".err")).string();
    o.stdout_path = (dir / (name + ".rank" + std::to_string(rank) + ".out")).string();
    absl::StatusOr<std::unique_ptr<Subprocess>> child = Subprocess::Start(o);
    EXPECT_TRUE(child.ok()) << child.status();
    if (child.ok()) ranks.push_back(std::move(*child));
  }
  return ranks;
}

// The newest "step" in a metrics.jsonl (0 before the first).
inline int64_t LoggedStep(const std::string& metrics_path) {
  int64_t step = 0;
  for (absl::string_view line :
       absl::StrSplit(ReadFile(metrics_path).value_or(""), '\n', absl::SkipEmpty())) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("step")) step = j["step"].get<int64_t>();
  }
  return step;
}

// Waits (bounded) until `metrics_path` logs `step`, or `rank0` exits.
inline void WaitForStep(const std::string& metrics_path, int64_t step, Subprocess& rank0,
                        const std::string& rank0_err) {
  for (int i = 0; i < 6000 && LoggedStep(metrics_path) < step && rank0.Running(); ++i) {
    ::usleep(10000);
  }
  ASSERT_GE(LoggedStep(metrics_path), step) << ReadFile(rank0_err).value_or("");
}

}  // namespace retort::clitest

#endif  // RETORT_TESTS_CLI_CLI_TEST_UTIL_H_
