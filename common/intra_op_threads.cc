#include "common/intra_op_threads.h"

#include <dlfcn.h>

#include <atomic>

#include <ATen/Parallel.h>

namespace retort {
namespace {

// Mirrors LibTorch's own process-wide setting, which it does not expose per
// thread.
std::atomic<int> chosen_threads{0};

// OpenMP's per-thread setter, looked up at run time: LibTorch loads libgomp,
// but this library is not linked against it (and a LibTorch without OpenMP
// needs nothing here).
void ApplyToThisThread(int threads) {
  using SetNumThreads = void (*)(int);
  static const SetNumThreads set =
      reinterpret_cast<SetNumThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  if (set != nullptr) set(threads);
}

}  // namespace

void SetIntraOpThreads(int threads) {
  if (threads < 1) threads = 1;
  chosen_threads.store(threads);
  at::set_num_threads(threads);
  ApplyToThisThread(threads);
  SetBlasThreads(threads);
}

void SetBlasThreads(int threads) {
  if (threads < 1) threads = 1;
  // OpenBLAS (Debian's pthread build) keeps its own pool, sized to every
  // core and untouched by LibTorch's setting; it is process-wide.
  using SetNumThreads = void (*)(int);
  static const SetNumThreads set_blas =
      reinterpret_cast<SetNumThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_blas != nullptr) set_blas(threads);
}

void InheritIntraOpThreads() {
  const int threads = chosen_threads.load();
  if (threads > 0) ApplyToThisThread(threads);
}

int IntraOpThreads() { return chosen_threads.load(); }

}  // namespace retort
