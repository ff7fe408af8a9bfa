#include "models/projection.h"

#include <cmath>
#include <utility>

namespace retort::models {

ProjectionImpl::ProjectionImpl(int64_t in_features, int64_t out_features, WeightInit init,
                               bool bias)
    : in_features_(in_features), out_features_(out_features) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  // torch::nn::Linear's reset_parameters(), so seeded models draw the same.
  if (init == WeightInit::kRandom) torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias) {
    this->bias = register_parameter("bias", torch::empty({out_features}));
    if (init == WeightInit::kRandom) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
      torch::nn::init::uniform_(this->bias, -bound, bound);
    }
  }
}

torch::Tensor ProjectionImpl::forward(const torch::Tensor& x) {
  if (input_sq_sums_.defined()) {
    input_sq_sums_ += x.detach().to(torch::kFloat64).pow(2).reshape({-1, in_features_}).sum(0);
  }
  return torch::linear(x, quantized_ ? EffectiveWeight().to(x.scalar_type()) : weight, bias);
}

void ProjectionImpl::StartInputStats() {
  input_sq_sums_ = torch::zeros({in_features_}, torch::kFloat64);
}

torch::Tensor ProjectionImpl::StopInputStats() {
  torch::Tensor out = input_sq_sums_;
  input_sq_sums_ = torch::Tensor();
  return out;
}

void ProjectionImpl::SetQuantized(BlockQuantized quantized) {
  torch::NoGradGuard no_grad;
  Held held;
  held.bits = quantized.bits;
  held.block_size = quantized.block_size;
  held.codes = quantized.bits == 4 ? PackInt4(quantized.codes) : quantized.codes;
  held.scales = quantized.scales.to(torch::kFloat32).contiguous();
  held.codes = register_buffer("weight_codes", held.codes);
  held.scales = register_buffer("weight_scale", held.scales);
  quantized_ = std::move(held);
  weight.set_data(torch::empty({0}, weight.options()));
  weight.set_requires_grad(false);
}

BlockQuantized ProjectionImpl::Quantized() const {
  BlockQuantized out;
  out.bits = quantized_->bits;
  out.block_size = quantized_->block_size;
  // Module::to(dtype) casts buffers too (a bf16 teacher): the codes are
  // small integers, exact in any float type, so cast them back.
  out.codes = quantized_->bits == 4 ? UnpackInt4(quantized_->codes.to(torch::kUInt8))
                                    : quantized_->codes.to(torch::kInt8);
  out.scales = quantized_->scales.to(torch::kFloat32);
  return out;
}

torch::Tensor ProjectionImpl::EffectiveWeight() const {
  if (!quantized_) return weight;
  return Quantized().Dequantize();
}

int64_t ProjectionImpl::WeightBytes() const {
  if (!quantized_) return weight.numel() * static_cast<int64_t>(weight.element_size());
  return quantized_->codes.numel() + quantized_->scales.numel() * 4;
}

}  // namespace retort::models
