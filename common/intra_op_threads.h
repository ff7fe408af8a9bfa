// LibTorch's intra-op thread count, applied to every thread that runs
// kernels.
//
// torch::set_num_threads covers the calling thread, but OpenMP keeps its
// thread count per thread: a std::thread started later (a batcher worker, a
// server stream) runs oneDNN's OpenMP kernels on every core regardless. On
// the 2-vCPU build machines that made a teacher server's forward pass use
// two cores while `--threads=1` said one (measured: 5,400 vs 3,300 rows/s
// for the demo's CNN), which silently skews benchmarks and starves a trainer
// on the same machine.
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

}  // namespace retort

#endif  // RETORT_COMMON_INTRA_OP_THREADS_H_
