// IEEE 754 binary16 to float, exactly, without LibTorch: how the cache's
// records and the fuzz target read the float16 fields the encoder wrote
// (with c10::Half's round-to-nearest-even).
#ifndef RETORT_CACHE_HALF_H_
#define RETORT_CACHE_HALF_H_

#include <cstdint>
#include <cstring>

namespace retort::cache {

inline float FromHalfBits(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0x1f) {  // inf or NaN
    bits = sign | 0x7f800000 | (mantissa << 13);
  } else if (exponent != 0) {  // normal
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {  // zero
    bits = sign;
  } else {  // subnormal: normalise
    exponent = 113;
    while ((mantissa & 0x400) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

}  // namespace retort::cache

#endif  // RETORT_CACHE_HALF_H_
