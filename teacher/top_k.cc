#include "teacher/top_k.h"

#include <ATen/Parallel.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

namespace retort::teacher {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Four floats (GCC/Clang vector extensions: one SSE2 register on the
// baseline x86-64 build).
typedef float V4f __attribute__((vector_size(16)));
typedef int32_t V4i __attribute__((vector_size(16)));

inline V4f Load(const float* p) {
  V4f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Whether any lane of a comparison's result is true.
inline bool AnyLane(V4i mask) {
#if defined(__SSE2__)
  return _mm_movemask_epi8((__m128i)mask) != 0;
#else
  return (mask[0] | mask[1] | mask[2] | mask[3]) != 0;
#endif
}

// Lane-wise: a where `take_a`, else b.
inline V4f Select(V4i take_a, V4f a, V4f b) {
  return (V4f)(((V4i)a & take_a) | ((V4i)b & ~take_a));
}

// exp(x) lane-wise for x <= 0, within about 2 float ulps (Cephes' expf:
// Cody-Waite reduction by ln 2 and a degree-6 polynomial); inputs below -87
// give exp(-87) ~ 1.6e-38 instead of a denormal.
inline V4f ExpNonPositive(V4f x) {
  const V4f low = V4f{} - 87.0f;
  x = Select(x < low, low, x);
  const float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const V4f t = x * 1.44269504088896341f + kRound;
  const V4f n = t - kRound;  // round(x / ln 2), in [-126, 0]
  const V4f r = x - n * 0.693359375f + n * 2.12194440e-4f;
  V4f y = V4f{} + 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  // 2^n from n's bits in t (its low mantissa bits hold n + 2^22).
  const V4i pow2_bits = ((V4i)t - 0x4B400000 + 127) << 23;
  return y * (V4f)pow2_bits;
}

// Sum over j of keep[j] * exp(min(x[j] - shift, 0)), in float lanes summed
// in double.
double MaskedSumExp(const float* x, const float* keep, int64_t n, float shift) {
  V4f acc{};
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    V4f d = Load(x + j) - shift;
    d = Select(d > 0.0f, V4f{}, d);
    acc += Load(keep + j) * ExpNonPositive(d);
  }
  double sum = 0;
  for (int l = 0; l < 4; ++l) sum += acc[l];
  if (j < n) {  // the last n % 4, padded with weight-0 lanes
    float xs[4] = {}, ks[4] = {};
    for (int64_t i = j; i < n; ++i) {
      xs[i - j] = x[i];
      ks[i - j] = keep[i];
    }
    V4f d = Load(xs) - shift;
    d = Select(d > 0.0f, V4f{}, d);
    const V4f e = Load(ks) * ExpNonPositive(d);
    for (int l = 0; l < 4; ++l) sum += e[l];
  }
  return sum;
}

// One row's top k (value descending, index ascending among equal values)
// and the log of the mass of the other entries, from `x` [classes].
// `keep` is scratch of `classes` floats, all 1 on entry and on return.
void RowTopK(const float* x, int64_t classes, int64_t k, float* values, int64_t* indices,
             float* tail, float* keep) {
  // A min-heap of the best k so far; its root is the entry to beat. An
  // entry equal to the root loses (the earlier index wins ties).
  std::vector<std::pair<float, int64_t>> heap;
  heap.reserve(static_cast<size_t>(k));
  const auto worse = [](const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  for (int64_t j = 0; j < k; ++j) heap.emplace_back(x[j], j);
  std::make_heap(heap.begin(), heap.end(), worse);
  float rest_max = kNegInf;  // the largest entry outside the heap
  const auto offer = [&](int64_t j) {
    const float v = x[j];
    if (v > heap.front().first) {
      rest_max = std::max(rest_max, heap.front().first);
      std::pop_heap(heap.begin(), heap.end(), worse);
      heap.back() = {v, j};
      std::push_heap(heap.begin(), heap.end(), worse);
    } else {
      rest_max = std::max(rest_max, v);
    }
  };
  // Four entries at a time: most beat nothing in the heap, and then only
  // their maximum matters.
  V4f rest_max4 = V4f{} + kNegInf;
  int64_t j = k;
  for (; j + 4 <= classes; j += 4) {
    const V4f v = Load(x + j);
    if (!AnyLane(v > heap.front().first)) {
      rest_max4 = Select(v > rest_max4, v, rest_max4);
    } else {
      for (int64_t i = j; i < j + 4; ++i) offer(i);
    }
  }
  for (; j < classes; ++j) offer(j);
  for (int l = 0; l < 4; ++l) rest_max = std::max(rest_max, rest_max4[l]);
  std::sort_heap(heap.begin(), heap.end(), worse);  // best first
  for (int64_t i = 0; i < k; ++i) {
    values[i] = heap[static_cast<size_t>(i)].first;
    indices[i] = heap[static_cast<size_t>(i)].second;
  }
  if (!(rest_max > kNegInf)) {  // nothing (or only -inf) outside the top k
    *tail = kNegInf;
    return;
  }
  // log sum over the others of exp(x), as rest_max + log sum exp(x -
  // rest_max): every term is <= 1 and one is 1, so the sum keeps its
  // relative precision however small the tail. The top k are masked out
  // (their clamped terms are 1 and weigh 0).
  for (int64_t i = 0; i < k; ++i) keep[indices[i]] = 0.0f;
  const double sum = MaskedSumExp(x, keep, classes, rest_max);
  for (int64_t i = 0; i < k; ++i) keep[indices[i]] = 1.0f;
  *tail = static_cast<float>(static_cast<double>(rest_max) + std::log(sum));
}

}  // namespace

TopKLogProbs TopK(const torch::Tensor& log_probs, int64_t k) {
  const int64_t rows = log_probs.size(0), classes = log_probs.size(1);
  TopKLogProbs out;
  if (log_probs.scalar_type() != torch::kFloat32 || k < 1 || k > classes) {
    // The general path (float64, k = 0; k > classes throws): torch's own
    // top-k and logsumexp.
    auto [values, indices] = log_probs.topk(k, /*dim=*/1, /*largest=*/true, /*sorted=*/true);
    out.values = values.contiguous();
    out.indices = indices.contiguous();
    out.tail_log_mass = torch::logsumexp(
        log_probs.scatter(1, indices, torch::full_like(values, kNegInf)), /*dim=*/1);
    return out;
  }
  const torch::Tensor x = log_probs.contiguous();
  out.values = torch::empty({rows, k}, torch::kFloat32);
  out.indices = torch::empty({rows, k}, torch::kInt64);
  out.tail_log_mass = torch::empty({rows}, torch::kFloat32);
  const float* in = x.data_ptr<float>();
  float* values = out.values.data_ptr<float>();
  int64_t* indices = out.indices.data_ptr<int64_t>();
  float* tail = out.tail_log_mass.data_ptr<float>();
  at::parallel_for(0, rows, /*grain_size=*/32, [&](int64_t begin, int64_t end) {
    std::vector<float> keep(static_cast<size_t>(classes), 1.0f);
    for (int64_t r = begin; r < end; ++r) {
      RowTopK(in + r * classes, classes, k, values + r * k, indices + r * k, tail + r, keep.data());
    }
  });
  return out;
}

torch::Tensor TopKLogProbs::ToDense(int64_t num_classes) const {
  const int64_t k = values.size(1);
  torch::Tensor fill;
  if (num_classes > k) {
    fill = tail_log_mass - std::log(static_cast<double>(num_classes - k));
  } else {
    fill = torch::full_like(tail_log_mass, kNegInf);
  }
  // Entries at -inf (a sampled answer's padding, which may repeat an id that
  // was drawn) go to a scratch column, so they never overwrite a real entry.
  torch::Tensor dense = fill.unsqueeze(1).expand({values.size(0), num_classes + 1}).contiguous();
  const torch::Tensor padding = values.isneginf();
  const torch::Tensor where =
      padding.any().item<bool>() ? indices.masked_fill(padding, num_classes) : indices;
  return dense.scatter(1, where, values).narrow(1, 0, num_classes).contiguous();
}

TopKLogProbs DenseAsTopK(const torch::Tensor& log_probs) {
  TopKLogProbs out;
  const int64_t n = log_probs.size(0), c = log_probs.size(1);
  out.indices = torch::arange(c, torch::kInt64).unsqueeze(0).expand({n, c});
  out.values = log_probs;
  out.tail_log_mass = torch::full({n}, kNegInf);
  return out;
}

}  // namespace retort::teacher
