#include "cache/encoding_options.h"

#include "absl/strings/str_cat.h"
#include "cache/bit_stream.h"

namespace retort::cache {

absl::Status EncodingOptions::Validate() const {
  if (kind == Kind::kTopK) {
    if (top_k < 1 || top_k > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("--cache_top_k must be in 1..65535, not ", top_k));
    }
    if (exact < 1 || exact > top_k) {
      return absl::InvalidArgumentError(
          absl::StrCat("--cache_exact must be in 1..--cache_top_k (", top_k, "), not ", exact));
    }
    if (value_bits < 1 || value_bits > 16) {
      return absl::InvalidArgumentError(
          absl::StrCat("--cache_value_bits must be in 1..16, not ", value_bits));
    }
  } else if (samples < 1 || samples > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--cache_samples must be in 1..65535, not ", samples));
  }
  return absl::OkStatus();
}

absl::StatusOr<EncodingOptions::Kind> EncodingOptions::ParseKind(const std::string& name) {
  if (name == "topk") return Kind::kTopK;
  if (name == "sampled") return Kind::kSampled;
  return absl::InvalidArgumentError(
      absl::StrCat("--cache_encoding must be topk or sampled, not '", name, "'"));
}

std::string EncodingOptions::Describe() const {
  if (kind == Kind::kSampled) return absl::StrCat("sampled N=", samples);
  return absl::StrCat("top-", top_k, " (", exact, " exact, ", value_bits, "-bit codes)");
}

nlohmann::json EncodingOptions::ToJson() const {
  if (kind == Kind::kSampled) return {{"kind", "sampled"}, {"samples", samples}};
  return {{"kind", "topk"}, {"top_k", top_k}, {"exact", exact}, {"value_bits", value_bits}};
}

absl::StatusOr<EncodingOptions> EncodingOptions::FromJson(const nlohmann::json& json) {
  EncodingOptions o;
  try {
    const std::string kind = json.at("kind").get<std::string>();
    if (kind == "sampled") {
      o.kind = Kind::kSampled;
      o.samples = json.at("samples").get<int32_t>();
    } else if (kind == "topk") {
      o.kind = Kind::kTopK;
      o.top_k = json.at("top_k").get<int32_t>();
      o.exact = json.at("exact").get<int32_t>();
      o.value_bits = json.at("value_bits").get<int32_t>();
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown encoding kind '", kind, "'"));
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("encoding: ", e.what()));
  }
  absl::Status valid = o.Validate();
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat("encoding: ", valid.message()));
  return o;
}

int64_t TopKBitsPerPosition(const EncodingOptions& o, int64_t vocab) {
  const int64_t coded = o.top_k - o.exact;
  return o.top_k * BitsFor(vocab) + o.exact * 16 + (coded > 0 ? 16 + coded * o.value_bits : 0) + 16;
}

}  // namespace retort::cache
