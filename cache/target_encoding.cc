#include "cache/target_encoding.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <c10/util/Half.h>

#include "absl/strings/str_cat.h"
#include "cache/bit_stream.h"
#include "cache/half.h"

namespace retort::cache {
namespace {

uint16_t HalfBits(float v) { return c10::Half(v).x; }

}  // namespace

absl::Status EncodeTopKRecord(const teacher::TopKLogProbs& top_k, const EncodingOptions& o,
                              int64_t vocab, std::string* out) {
  const int64_t k = o.top_k;
  if (top_k.indices.dim() != 2 || top_k.indices.size(1) < k ||
      top_k.values.sizes() != top_k.indices.sizes() || top_k.tail_log_mass.dim() != 1 ||
      top_k.tail_log_mass.size(0) != top_k.indices.size(0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("top-k record: the teacher's answer has ",
                     top_k.indices.dim() == 2 ? top_k.indices.size(1) : 0,
                     " entries per position, the encoding needs ", k));
  }
  const int64_t positions = top_k.indices.size(0);
  const torch::Tensor ids = top_k.indices.narrow(1, 0, k).to(torch::kInt64).contiguous();
  const torch::Tensor values = top_k.values.narrow(1, 0, k).to(torch::kFloat32).contiguous();
  // The mass of the entries beyond k joins the tail.
  torch::Tensor tail = top_k.tail_log_mass.to(torch::kFloat32);
  if (top_k.indices.size(1) > k) {
    tail = torch::logaddexp(
        tail, torch::logsumexp(
                  top_k.values.narrow(1, k, top_k.indices.size(1) - k).to(torch::kFloat32), 1));
  }
  tail = tail.contiguous();
  const int64_t* id = ids.data_ptr<int64_t>();
  const float* v = values.data_ptr<float>();
  const float* t = tail.data_ptr<float>();
  const int id_bits = BitsFor(vocab);
  const uint64_t max_code = (uint64_t{1} << o.value_bits) - 1;
  BitWriter w(out);
  for (int64_t p = 0; p < positions; ++p) {
    const int64_t* pid = id + p * k;
    const float* pv = v + p * k;
    for (int64_t i = 0; i < k; ++i) {
      if (pid[i] < 0 || pid[i] >= vocab) {
        return absl::InvalidArgumentError(
            absl::StrCat("top-k record: id ", pid[i], " outside the vocabulary of ", vocab));
      }
      w.Write(static_cast<uint64_t>(pid[i]), id_bits);
    }
    for (int64_t i = 0; i < o.exact; ++i) w.Write(HalfBits(pv[i]), 16);
    if (k > o.exact) {
      // Codes count down from the last exact value as stored (values above
      // it, from unsorted input, clamp to code 0; -inf to the last code).
      const float anchor = FromHalfBits(HalfBits(pv[o.exact - 1]));
      const float lowest = std::isfinite(pv[k - 1]) ? pv[k - 1] : anchor - 1e4f;
      const float scale =
          FromHalfBits(HalfBits(std::max(anchor - lowest, 0.0f) / static_cast<float>(max_code)));
      w.Write(HalfBits(scale), 16);
      for (int64_t i = o.exact; i < k; ++i) {
        uint64_t code = max_code;
        if (scale > 0 && std::isfinite(pv[i])) {
          const double c = std::round((anchor - pv[i]) / scale);
          code = c <= 0 ? 0 : std::min<uint64_t>(max_code, static_cast<uint64_t>(c));
        } else if (std::isfinite(pv[i])) {
          code = 0;
        }
        w.Write(code, o.value_bits);
      }
    }
    w.Write(HalfBits(t[p]), 16);
  }
  w.Finish();
  return absl::OkStatus();
}

absl::Status EncodeSampledRecord(const teacher::SampledTargets& sampled, const EncodingOptions& o,
                                 int64_t vocab, std::string* out) {
  if (sampled.samples != o.samples || sampled.ids.dim() != 2 ||
      sampled.counts.sizes() != sampled.ids.sizes()) {
    return absl::InvalidArgumentError(absl::StrCat("sampled record: ", sampled.samples,
                                                   " draws per position, the encoding needs ",
                                                   o.samples));
  }
  const torch::Tensor ids = sampled.ids.to(torch::kInt64).contiguous();
  const torch::Tensor counts = sampled.counts.to(torch::kInt32).contiguous();
  const int64_t positions = ids.size(0), width = ids.size(1);
  const int64_t* id = ids.data_ptr<int64_t>();
  const int32_t* count = counts.data_ptr<int32_t>();
  const int id_bits = BitsFor(vocab);
  const int m_bits = BitsFor(static_cast<uint64_t>(o.samples) + 1);
  const int count_bits = BitsFor(static_cast<uint64_t>(o.samples));
  BitWriter w(out);
  for (int64_t p = 0; p < positions; ++p) {
    int64_t m = 0, total = 0;
    for (int64_t i = 0; i < width; ++i) {
      if (count[p * width + i] > 0) ++m, total += count[p * width + i];
    }
    if (total != o.samples) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampled record: position ", p, " has ", total, " draws, not ", o.samples));
    }
    w.Write(static_cast<uint64_t>(m), m_bits);
    for (int64_t i = 0; i < width; ++i) {
      const int32_t c = count[p * width + i];
      if (c == 0) continue;
      if (id[p * width + i] < 0 || id[p * width + i] >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat("sampled record: id ", id[p * width + i],
                                                       " outside the vocabulary of ", vocab));
      }
      w.Write(static_cast<uint64_t>(id[p * width + i]), id_bits);
      w.Write(static_cast<uint64_t>(c - 1), count_bits);
    }
  }
  w.Finish();
  return absl::OkStatus();
}

absl::StatusOr<teacher::TopKLogProbs> DecodeRecords(const std::vector<RecordView>& records,
                                                    int64_t positions, const EncodingOptions& o,
                                                    int64_t vocab, const RecordNamer& what) {
  absl::StatusOr<int64_t> width = DecodedWidth(records, positions, o, vocab, what);
  if (!width.ok()) return width.status();
  const int64_t total = static_cast<int64_t>(records.size()) * positions;
  teacher::TopKLogProbs out;
  out.indices = torch::empty({total, *width}, torch::kInt64);
  out.values = torch::empty({total, *width}, torch::kFloat32);
  out.tail_log_mass = torch::empty({total}, torch::kFloat32);
  absl::Status decoded =
      DecodeRecordsInto(records, positions, o, vocab, what, *width, out.indices.data_ptr<int64_t>(),
                        out.values.data_ptr<float>(), out.tail_log_mass.data_ptr<float>());
  if (!decoded.ok()) return decoded;
  return out;
}

}  // namespace retort::cache
