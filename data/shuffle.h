// Deterministic, platform-independent shuffling. std::shuffle's results
// depend on the standard library; these do not, so a data order recorded on
// one machine replays on any other.
#ifndef RETORT_DATA_SHUFFLE_H_
#define RETORT_DATA_SHUFFLE_H_

#include <cstdint>
#include <vector>

namespace retort::data {

// SplitMix64: a small, high-quality 64-bit generator.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform in [0, bound), without modulo bias. `bound` > 0.
  uint64_t Below(uint64_t bound);

 private:
  uint64_t state_;
};

// Fisher-Yates shuffle driven by SplitMix64 seeded from (seed, stream).
void ShuffleInPlace(std::vector<int64_t>& values, uint64_t seed, uint64_t stream);

}  // namespace retort::data

#endif  // RETORT_DATA_SHUFFLE_H_
