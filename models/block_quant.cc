#include "models/block_quant.h"

#include <numeric>

#include "absl/strings/str_cat.h"

namespace retort::models {

torch::Tensor BlockQuantized::Dequantize() const {
  const int64_t blocks = scales.size(1);
  return (codes.to(torch::kFloat32).view({rows(), blocks, block_size}) * scales.unsqueeze(-1))
      .view({rows(), cols()});
}

int64_t BlockQuantized::StorageBytes(int scale_bytes) const {
  const int64_t code_bytes = bits == 4 ? codes.numel() / 2 : codes.numel();
  return code_bytes + scales.numel() * scale_bytes;
}

std::string BlockQuantized::Describe() const {
  if (block_size == cols()) return absl::StrCat("int", bits, " per-channel");
  return absl::StrCat("int", bits, " g", block_size);
}

absl::StatusOr<BlockQuantized> QuantizeBlocks(const torch::Tensor& weight, int bits,
                                              int64_t block_size) {
  if (weight.dim() != 2 || !weight.is_floating_point()) {
    return absl::InvalidArgumentError(
        absl::StrCat("block quantization takes a 2-D floating-point matrix, got ", weight.dim(),
                     "-D ", c10::toString(weight.scalar_type())));
  }
  if (bits != 4 && bits != 8) {
    return absl::InvalidArgumentError(absl::StrCat("quantization bits must be 4 or 8, got ", bits));
  }
  const int64_t rows = weight.size(0), cols = weight.size(1);
  if (block_size == 0) block_size = cols;
  if (block_size < 0 || cols == 0 || cols % block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("group size ", block_size,
                                                   " does not divide the ", cols, " columns of a [",
                                                   rows, ", ", cols, "] matrix; pick a divisor"));
  }
  if (bits == 4 && block_size % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("4-bit groups must be of even size (two codes a byte), got ", block_size));
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor w = weight.detach().to(torch::kFloat32).contiguous();
  if (!torch::isfinite(w).all().item<bool>()) {
    return absl::InvalidArgumentError("cannot quantize a matrix holding NaN or infinity");
  }
  const int64_t blocks = cols / block_size;
  const torch::Tensor b = w.view({rows, blocks, block_size});
  torch::Tensor d, q;
  if (bits == 8) {
    d = b.abs().amax(-1) / 127.0;
    const torch::Tensor inv = torch::where(d > 0, 1.0 / d, torch::zeros_like(d)).unsqueeze(-1);
    const torch::Tensor x = b * inv;
    q = (torch::sign(x) * torch::floor(x.abs() + 0.5)).clamp(-127, 127);
  } else {
    const torch::Tensor index = b.abs().argmax(-1, /*keepdim=*/true);
    d = b.gather(-1, index).squeeze(-1) / -8.0;
    const torch::Tensor inv = torch::where(d != 0, 1.0 / d, torch::zeros_like(d)).unsqueeze(-1);
    // (int8_t)(x * id + 8.5f), capped at 15, then - 8: llama.cpp's float32
    // arithmetic, which can round differently from floor(x * id + 0.5).
    q = torch::floor(b * inv + 8.5).clamp_max(15) - 8;
  }
  BlockQuantized out;
  out.bits = bits;
  out.block_size = block_size;
  out.codes = q.to(torch::kInt8).view({rows, cols}).contiguous();
  out.scales = d.contiguous();
  return out;
}

absl::StatusOr<BlockQuantized> QuantizeWithFallback(const torch::Tensor& weight, int bits,
                                                    int64_t block_size) {
  if (weight.dim() == 2 && block_size > 0 && weight.size(1) % block_size != 0) {
    // The largest group dividing both; 4 bits only while the scales stay a
    // small overhead (groups of 16 or more), else 8 bits per channel.
    const int64_t group = std::gcd(weight.size(1), block_size);
    if (bits == 4 && group >= 16) return QuantizeBlocks(weight, 4, group);
    return QuantizeBlocks(weight, 8, 0);
  }
  if (bits == 4 && block_size % 2 != 0) return QuantizeBlocks(weight, 8, 0);
  return QuantizeBlocks(weight, bits, block_size);
}

torch::Tensor PackInt4(const torch::Tensor& codes) {
  const torch::Tensor u = (codes.to(torch::kInt16) + 8).to(torch::kUInt8);
  const torch::Tensor pairs = u.view({codes.size(0), codes.size(1) / 2, 2});
  return (pairs.select(-1, 0) | (pairs.select(-1, 1) * 16)).contiguous();
}

torch::Tensor UnpackInt4(const torch::Tensor& packed) {
  const torch::Tensor low = (packed & 15).to(torch::kInt8) - 8;
  const torch::Tensor high = torch::div(packed, 16, "floor").to(torch::kInt8) - 8;
  return torch::stack({low, high}, -1).view({packed.size(0), packed.size(1) * 2});
}

}  // namespace retort::models
