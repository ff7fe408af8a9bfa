// Stand-in for a LibTorch header that Debian's libtorch-dev 1.13 does not
// ship but torch/csrc/distributed/c10d/reducer.hpp includes. The reducer only
// names these two types (for distributed-autograd gradient callbacks, which
// retort does not use). On the include path only when the real header is
// missing (cmake/RetortDeps.cmake).
#pragma once

#include <functional>
#include <memory>

#include <ATen/core/Tensor.h>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};
using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch
