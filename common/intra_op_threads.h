// LibTorch's intra-op thread count, applied to every thread that runs
// kernels.
//
// torch::set_num_threads covers the calling thread, but OpenMP keeps its
// thread count per thread (a std::thread started later, such as a batcher
// worker, starts from the default), and Debian's OpenBLAS keeps its own pool
// sized to every core. On the 2-vCPU build machines a teacher server started
// with `--threads=1` showed two threads busy at 100 % each in per-thread CPU
// accounting (about 190 % for the process); with these settings the
// in-process forward pass ran on one busy thread.
#ifndef RETORT_COMMON_INTRA_OP_THREADS_H_
#define RETORT_COMMON_INTRA_OP_THREADS_H_

namespace retort {

// Sets the count for LibTorch (process-wide), OpenBLAS's own thread pool
// (process-wide, when OpenBLAS is the BLAS) and this thread's OpenMP, and
// remembers it for InheritIntraOpThreads. `threads` >= 1.
void SetIntraOpThreads(int threads);

// Applies the count chosen by SetIntraOpThreads to the calling thread's
// OpenMP; does nothing if it was never called. Call first thing in threads
// that run LibTorch kernels.
void InheritIntraOpThreads();

// The count chosen by SetIntraOpThreads, or 0.
int IntraOpThreads();

// Sets OpenBLAS's own pool (process-wide; nothing when OpenBLAS is not the
// BLAS) apart from OpenMP's count: LibTorch's CPU GEMMs run on OpenBLAS's
// threads, everything else on OpenMP's, and the fastest counts differ (see
// docs/performance.md). Call after SetIntraOpThreads, which sets both to its
// count. `threads` >= 1.
void SetBlasThreads(int threads);

}  // namespace retort

#endif  // RETORT_COMMON_INTRA_OP_THREADS_H_
