// The one place where LibTorch versions differ for c10d. Debian's LibTorch
// 1.13 makes ProcessGroupGloo a ProcessGroup; LibTorch 2.x (the CUDA builds
// GPU clusters run) makes it a Backend that a ProcessGroup dispatches to.
// Built and tested with 1.13.1 (Debian). The 2.x branch follows the 2.x
// headers (ProcessGroup(store, rank, size) + setBackend, the Reducer's
// trailing defaulted arguments) but has not been compiled here: no LibTorch
// 2.x is available on the build machines; tools/device/libtorch2_check.sh
// builds and tests the project against one.
//
// Included only by c10d_communicator.cc (compiled with USE_C10D_GLOO).
#ifndef RETORT_DISTRIBUTED_C10D_COMPAT_H_
#define RETORT_DISTRIBUTED_C10D_COMPAT_H_

#include <torch/version.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace retort::distributed::c10d_compat {

// A process group whose collectives on CPU tensors run on `gloo`.
inline c10::intrusive_ptr<c10d::ProcessGroup> GlooProcessGroup(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
    c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo) {
#if TORCH_VERSION_MAJOR >= 2
  auto group = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size);
  group->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
  group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
  return group;
#else
  (void)store;
  (void)rank;
  (void)size;
  return gloo;
#endif
}

// c10d's DDP engine over `group` (dense gradients, every parameter used).
inline std::shared_ptr<c10d::Reducer> MakeReducer(
    const std::vector<at::Tensor>& parameters, const std::vector<std::vector<size_t>>& buckets,
    const std::vector<size_t>& bucket_limits, const c10::intrusive_ptr<c10d::ProcessGroup>& group,
    int64_t bucket_bytes, int64_t first_bucket_bytes) {
  const std::vector<bool> dense(parameters.size(), false);
  return std::make_shared<c10d::Reducer>(parameters, buckets, bucket_limits, group, dense,
                                         bucket_bytes, /*find_unused_parameters=*/false,
                                         /*gradient_as_bucket_view=*/false,
                                         std::unordered_map<size_t, std::string>(),
                                         first_bucket_bytes);
}

}  // namespace retort::distributed::c10d_compat

#endif  // RETORT_DISTRIBUTED_C10D_COMPAT_H_
