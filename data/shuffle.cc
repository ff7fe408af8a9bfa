#include "data/shuffle.h"

#include <cstddef>
#include <utility>

namespace retort::data {

uint64_t SplitMix64::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::Below(uint64_t bound) {
  // Reject the top partial range so every residue is equally likely.
  uint64_t limit = ~uint64_t{0} - (~uint64_t{0} % bound);
  uint64_t x;
  do {
    x = Next();
  } while (x >= limit);
  return x % bound;
}

void ShuffleInPlace(std::vector<int64_t>& values, uint64_t seed, uint64_t stream) {
  SplitMix64 rng(seed * 0x9e3779b97f4a7c15ULL ^ (stream + 0x632be59bd9b4e019ULL));
  for (size_t i = values.size(); i > 1; --i) {
    size_t j = static_cast<size_t>(rng.Below(i));
    std::swap(values[i - 1], values[j]);
  }
}

}  // namespace retort::data
