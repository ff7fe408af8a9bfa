// Input augmentation for image batches.
#ifndef RETORT_DATA_AUGMENT_H_
#define RETORT_DATA_AUGMENT_H_

#include <torch/torch.h>

namespace retort::data {

// Shifts each image of `images` [B, C, H, W] by an independent random offset
// of up to `max_pixels` in each direction, filling with the background value
// (the minimum of the batch, i.e. a black pixel after standardisation).
// Draws from `generator`. Returns `images` unchanged when max_pixels == 0.
torch::Tensor JitterImages(const torch::Tensor& images, int64_t max_pixels,
                           const at::Generator& generator);

}  // namespace retort::data

#endif  // RETORT_DATA_AUGMENT_H_
