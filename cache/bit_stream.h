// Bit-level writing and reading of unsigned fields, least significant bit
// first within little-endian bytes: the packing of the teacher-logit cache's
// records (ids at the vocabulary's width, quantized values, counts).
#ifndef RETORT_CACHE_BIT_STREAM_H_
#define RETORT_CACHE_BIT_STREAM_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace retort::cache {

// The number of bits that hold every value in [0, n): 1 for n <= 2.
int BitsFor(uint64_t n);

class BitWriter {
 public:
  explicit BitWriter(std::string* out) : out_(out) {}
  // Appends the low `bits` bits of `value` (bits in 0..57).
  void Write(uint64_t value, int bits);
  // Pads to a whole byte with zero bits and flushes.
  void Finish();

 private:
  std::string* out_;
  uint64_t buffer_ = 0;
  int used_ = 0;
};

// Reads fields written by BitWriter from [data, data + size). Reading past
// the end sets overrun() and yields zeros, so a hostile record cannot read
// outside its bytes; callers check overrun() once at the end.
class BitReader {
 public:
  BitReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint64_t Read(int bits);
  bool overrun() const { return overrun_; }
  // Bytes touched so far, rounded up.
  size_t bytes_consumed() const { return (bit_ + 7) / 8; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t bit_ = 0;
  bool overrun_ = false;
};

}  // namespace retort::cache

#endif  // RETORT_CACHE_BIT_STREAM_H_
