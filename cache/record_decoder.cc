#include "cache/record_decoder.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "cache/bit_stream.h"
#include "cache/half.h"

namespace retort::cache {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

absl::Status Corrupt(const RecordNamer& what, size_t r, const std::string& why) {
  return absl::DataLossError(absl::StrCat(what(r), ": ", why));
}

}  // namespace

absl::StatusOr<int64_t> DecodedWidth(const std::vector<RecordView>& records, int64_t positions,
                                     const EncodingOptions& o, int64_t vocab,
                                     const RecordNamer& what) {
  if (o.kind == EncodingOptions::Kind::kTopK) {
    const int64_t bytes = (TopKBitsPerPosition(o, vocab) * positions + 7) / 8;
    for (size_t r = 0; r < records.size(); ++r) {
      if (static_cast<int64_t>(records[r].size) != bytes) {
        return Corrupt(what, r,
                       absl::StrCat("record of ", records[r].size, " bytes, expected ", bytes,
                                    " for ", positions, " positions of ", o.Describe()));
      }
    }
    return static_cast<int64_t>(o.top_k);
  }
  const int id_bits = BitsFor(static_cast<uint64_t>(vocab));
  const int m_bits = BitsFor(static_cast<uint64_t>(o.samples) + 1);
  const int count_bits = BitsFor(static_cast<uint64_t>(o.samples));
  int64_t width = 1;
  for (size_t r = 0; r < records.size(); ++r) {
    BitReader in(records[r].data, records[r].size);
    for (int64_t p = 0; p < positions && !in.overrun(); ++p) {
      const int64_t m = static_cast<int64_t>(in.Read(m_bits));
      if (m < 1 || m > o.samples) {
        return Corrupt(
            what, r,
            absl::StrCat("position ", p, ": ", m, " distinct ids of ", o.samples, " draws"));
      }
      width = std::max(width, m);
      for (int64_t i = 0; i < m; ++i) {
        in.Read(id_bits);
        in.Read(count_bits);
      }
    }
    if (in.overrun()) return Corrupt(what, r, "record ends early");
    if (in.bytes_consumed() != records[r].size) {
      return Corrupt(what, r,
                     absl::StrCat("record of ", records[r].size, " bytes holds ",
                                  in.bytes_consumed(), " bytes of ", positions, " positions"));
    }
  }
  return width;
}

absl::Status DecodeRecordsInto(const std::vector<RecordView>& records, int64_t positions,
                               const EncodingOptions& o, int64_t vocab, const RecordNamer& what,
                               int64_t width, int64_t* ids, float* values, float* tail) {
  const int id_bits = BitsFor(static_cast<uint64_t>(vocab));
  if (o.kind == EncodingOptions::Kind::kTopK) {
    const int64_t k = o.top_k;
    if (width != k) return absl::InvalidArgumentError("DecodeRecordsInto: width != top_k");
    for (size_t r = 0; r < records.size(); ++r) {
      BitReader in(records[r].data, records[r].size);
      for (int64_t p = 0; p < positions; ++p) {
        const int64_t row = static_cast<int64_t>(r) * positions + p;
        int64_t* pid = ids + row * k;
        float* pv = values + row * k;
        for (int64_t i = 0; i < k; ++i) {
          pid[i] = static_cast<int64_t>(in.Read(id_bits));
          if (pid[i] >= vocab) {
            return Corrupt(what, r,
                           absl::StrCat("position ", p, ": id ", pid[i],
                                        " outside the vocabulary of ", vocab));
          }
        }
        for (int64_t i = 0; i < o.exact; ++i) {
          pv[i] = FromHalfBits(static_cast<uint16_t>(in.Read(16)));
        }
        if (k > o.exact) {
          const float scale = FromHalfBits(static_cast<uint16_t>(in.Read(16)));
          const float anchor = pv[o.exact - 1];
          for (int64_t i = o.exact; i < k; ++i) {
            pv[i] = anchor - scale * static_cast<float>(in.Read(o.value_bits));
          }
        }
        tail[row] = FromHalfBits(static_cast<uint16_t>(in.Read(16)));
        // Renormalise the k + 1 buckets: quantization moves their sum off 1.
        float hi = tail[row];
        for (int64_t i = 0; i < k; ++i) hi = std::max(hi, pv[i]);
        if (!std::isfinite(hi)) {
          return Corrupt(what, r, absl::StrCat("position ", p, ": no finite log-probability"));
        }
        double sum = std::isnan(tail[row]) ? NAN : std::exp(static_cast<double>(tail[row]) - hi);
        for (int64_t i = 0; i < k; ++i) sum += std::exp(static_cast<double>(pv[i]) - hi);
        if (!std::isfinite(sum)) {
          return Corrupt(what, r, absl::StrCat("position ", p, ": NaN log-probability"));
        }
        const float lse = hi + static_cast<float>(std::log(sum));
        for (int64_t i = 0; i < k; ++i) pv[i] -= lse;
        tail[row] -= lse;
      }
      if (in.overrun()) return Corrupt(what, r, "record ends early");
    }
    return absl::OkStatus();
  }
  const int m_bits = BitsFor(static_cast<uint64_t>(o.samples) + 1);
  const int count_bits = BitsFor(static_cast<uint64_t>(o.samples));
  const float log_n = std::log(static_cast<float>(o.samples));
  for (size_t r = 0; r < records.size(); ++r) {
    BitReader in(records[r].data, records[r].size);
    for (int64_t p = 0; p < positions; ++p) {
      const int64_t row = static_cast<int64_t>(r) * positions + p;
      std::fill(ids + row * width, ids + (row + 1) * width, 0);
      std::fill(values + row * width, values + (row + 1) * width, -kInf);
      tail[row] = -kInf;
      const int64_t m = static_cast<int64_t>(in.Read(m_bits));
      if (m < 1 || m > width) {
        return Corrupt(what, r,
                       absl::StrCat("position ", p, ": ", m, " distinct ids, more than ", width));
      }
      int64_t drawn = 0;
      for (int64_t i = 0; i < m; ++i) {
        const int64_t token = static_cast<int64_t>(in.Read(id_bits));
        const int64_t count = static_cast<int64_t>(in.Read(count_bits)) + 1;
        if (token >= vocab) {
          return Corrupt(
              what, r,
              absl::StrCat("position ", p, ": id ", token, " outside the vocabulary of ", vocab));
        }
        ids[row * width + i] = token;
        values[row * width + i] = std::log(static_cast<float>(count)) - log_n;
        drawn += count;
      }
      if (drawn != o.samples) {
        return Corrupt(
            what, r, absl::StrCat("position ", p, ": counts sum to ", drawn, ", not ", o.samples));
      }
    }
    if (in.overrun()) return Corrupt(what, r, "record ends early");
  }
  return absl::OkStatus();
}

}  // namespace retort::cache
