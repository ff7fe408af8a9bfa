// Helpers shared by the end-to-end tests of the retort binary: a small
// Fashion-MNIST look-alike on disk, and running the binary as a process.
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

#include "common/file_util.h"

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

}  // namespace retort::clitest

#endif  // RETORT_TESTS_CLI_CLI_TEST_UTIL_H_
