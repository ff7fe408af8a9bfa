#include "student/student.h"

namespace retort::student {

ModelSize MeasureModel(const torch::nn::Module& module) {
  ModelSize size;
  for (const auto& p : module.parameters()) {
    size.parameters += p.numel();
    size.parameter_bytes += static_cast<int64_t>(p.nbytes());
  }
  for (const auto& b : module.buffers()) size.parameter_bytes += static_cast<int64_t>(b.nbytes());
  return size;
}

}  // namespace retort::student
