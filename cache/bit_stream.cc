#include "cache/bit_stream.h"

#include <algorithm>

namespace retort::cache {

int BitsFor(uint64_t n) {
  int bits = 1;
  while (bits < 64 && (uint64_t{1} << bits) < n) ++bits;
  return bits;
}

void BitWriter::Write(uint64_t value, int bits) {
  if (bits < 64) value &= (uint64_t{1} << bits) - 1;
  buffer_ |= value << used_;
  used_ += bits;
  while (used_ >= 8) {
    out_->push_back(static_cast<char>(buffer_ & 0xff));
    buffer_ >>= 8;
    used_ -= 8;
  }
}

void BitWriter::Finish() {
  if (used_ > 0) out_->push_back(static_cast<char>(buffer_ & 0xff));
  buffer_ = 0;
  used_ = 0;
}

uint64_t BitReader::Read(int bits) {
  if (bit_ + bits > size_ * 8) {
    overrun_ = true;
    bit_ = size_ * 8;
    return 0;
  }
  uint64_t value = 0;
  for (int got = 0; got < bits;) {
    const size_t byte = bit_ / 8;
    const int offset = static_cast<int>(bit_ % 8);
    const int take = std::min(8 - offset, bits - got);
    const uint64_t chunk = (data_[byte] >> offset) & ((1u << take) - 1);
    value |= chunk << got;
    got += take;
    bit_ += take;
  }
  return value;
}

}  // namespace retort::cache
