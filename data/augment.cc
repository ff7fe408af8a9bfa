#include "data/augment.h"

namespace retort::data {

torch::Tensor JitterImages(const torch::Tensor& images, int64_t max_pixels,
                           const at::Generator& generator) {
  if (max_pixels <= 0) return images;
  TORCH_CHECK(images.dim() == 4, "jitter expects [B, C, H, W] images");
  const int64_t b = images.size(0), h = images.size(2), w = images.size(3);
  const int64_t p = max_pixels;
  torch::Tensor background = images.min();
  torch::Tensor padded = torch::constant_pad_nd(images, {p, p, p, p}, background.item<double>());
  torch::Tensor offsets = torch::randint(0, 2 * p + 1, {b, 2}, generator, torch::kLong);
  auto off = offsets.accessor<int64_t, 2>();
  torch::Tensor out = torch::empty_like(images);
  for (int64_t i = 0; i < b; ++i) {
    out[i].copy_(padded[i].narrow(1, off[i][0], h).narrow(2, off[i][1], w));
  }
  return out;
}

}  // namespace retort::data
