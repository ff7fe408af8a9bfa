// The compact student: the size figures reported for it. (Construction is
// models::CreateClassifier; pruning, slicing, quantization and export build on
// this library.)
#ifndef RETORT_STUDENT_STUDENT_H_
#define RETORT_STUDENT_STUDENT_H_

#include <cstdint>

#include <torch/torch.h>

namespace retort::student {

struct ModelSize {
  int64_t parameters = 0;       // trainable scalars
  int64_t parameter_bytes = 0;  // bytes of parameters and buffers in memory
};

ModelSize MeasureModel(const torch::nn::Module& module);

}  // namespace retort::student

#endif  // RETORT_STUDENT_STUDENT_H_
