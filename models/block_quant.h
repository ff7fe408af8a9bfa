// Symmetric block quantization of weight matrices: each row of a [rows, cols]
// matrix is cut into blocks of `block_size` consecutive columns, and each
// block stores one float scale d and small signed integer codes q with
// w ~= d * q.
//
//   8-bit: d = max|w| / 127, q = round(w / d) in [-127, 127] (round half away
//          from zero). block_size = cols is per-channel (per output row)
//          int8; block_size = 32 is GGUF's Q8_0.
//   4-bit: m = the block's value of largest magnitude (with its sign),
//          d = m / -8, q = min(floor(w / d + 8.5), 15) - 8 (float32). All 16 codes
//          are used, the extreme value lands exactly on -8 * d. With
//          block_size = 32 this is GGUF's Q4_0.
// A block of zeros has d = 0 and codes 0.
//
// These are the formulas of llama.cpp's reference quantizers
// (quantize_row_q8_0_ref, quantize_row_q4_0_ref), so a GGUF file we write
// dequantizes in llama.cpp to the same values as here (up to the scale's
// rounding to float16, which the GGUF writer applies).
//
// Codes are held as int8 [rows, cols]; PackInt4 / UnpackInt4 convert 4-bit
// codes to and from two codes a byte for storage.
#ifndef RETORT_MODELS_BLOCK_QUANT_H_
#define RETORT_MODELS_BLOCK_QUANT_H_

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"

namespace retort::models {

struct BlockQuantized {
  int bits = 8;             // 8 or 4
  int64_t block_size = 0;   // columns per scale; divides cols
  torch::Tensor codes;      // int8 [rows, cols]
  torch::Tensor scales;     // float32 [rows, cols / block_size]

  int64_t rows() const { return codes.size(0); }
  int64_t cols() const { return codes.size(1); }

  // float32 [rows, cols]: codes * their block's scale.
  torch::Tensor Dequantize() const;
  // Bytes when stored packed (4-bit codes two a byte) with scales of
  // `scale_bytes` each (4 for float32, 2 for float16).
  int64_t StorageBytes(int scale_bytes = 4) const;
  // "int8 per-channel" / "int8 g32" / "int4 g64".
  std::string Describe() const;
};

// Quantizes a 2-D floating-point tensor. INVALID_ARGUMENT when it is not 2-D,
// bits is not 4 or 8, block_size does not divide the columns (naming both),
// or the tensor holds a non-finite value. block_size 0 means one block a row.
absl::StatusOr<BlockQuantized> QuantizeBlocks(const torch::Tensor& weight, int bits,
                                              int64_t block_size);

// QuantizeBlocks, except for a matrix whose columns `block_size` does not
// divide: 4 bits with the largest group dividing both when that is 16 or
// more (784 columns in groups of 64 -> groups of 16), else 8 bits per row,
// as llama.cpp's quantizer falls back for tensors its block does not fit.
absl::StatusOr<BlockQuantized> QuantizeWithFallback(const torch::Tensor& weight, int bits,
                                                    int64_t block_size);

// int8 codes in [-8, 7], [rows, cols] with cols even -> uint8 [rows, cols / 2]:
// byte j holds code 2j in its low nibble and code 2j + 1 in its high nibble,
// each offset by 8 (so 0..15).
torch::Tensor PackInt4(const torch::Tensor& codes);
// The inverse: uint8 [rows, n] -> int8 [rows, 2n] in [-8, 7].
torch::Tensor UnpackInt4(const torch::Tensor& packed);

}  // namespace retort::models

#endif  // RETORT_MODELS_BLOCK_QUANT_H_
