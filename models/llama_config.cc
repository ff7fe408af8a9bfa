#include "models/llama_config.h"

#include <cmath>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace retort::models {
namespace {

absl::Status Invalid(const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat("llama config: ", message));
}

}  // namespace

absl::Status LlamaConfig::Validate() const {
  struct Positive {
    const char* name;
    int64_t value;
  };
  for (const Positive& p :
       {Positive{"vocab_size", vocab_size}, Positive{"hidden_size", hidden_size},
        Positive{"intermediate_size", intermediate_size},
        Positive{"num_hidden_layers", num_hidden_layers},
        Positive{"num_attention_heads", num_attention_heads},
        Positive{"num_key_value_heads", num_key_value_heads},
        Positive{"max_position_embeddings", max_position_embeddings}}) {
    if (p.value < 1) return Invalid(absl::StrCat(p.name, " must be at least 1, got ", p.value));
  }
  if (attention_head_dim < 0) {
    return Invalid(absl::StrCat("head_dim must be positive (or 0: hidden_size / heads), got ",
                                attention_head_dim));
  }
  if (attention_head_dim == 0 && hidden_size % num_attention_heads != 0) {
    return Invalid(absl::StrCat("hidden_size ", hidden_size, " does not split into ",
                                num_attention_heads, " heads; change either or set head_dim"));
  }
  if (head_dim() % 2 != 0) {
    return Invalid(
        absl::StrCat("head_dim ", head_dim(), " must be even (rotary embeddings rotate pairs)"));
  }
  if (num_attention_heads % num_key_value_heads != 0) {
    return Invalid(absl::StrCat("num_attention_heads ", num_attention_heads,
                                " must be a multiple of num_key_value_heads ",
                                num_key_value_heads));
  }
  if (!(rope_theta > 1.0) || !std::isfinite(rope_theta)) {
    return Invalid(absl::StrCat("rope_theta must be finite and above 1, got ", rope_theta));
  }
  if (!(rms_norm_eps > 0.0) || !(rms_norm_eps < 1.0)) {
    return Invalid(absl::StrCat("rms_norm_eps must be in (0, 1), got ", rms_norm_eps));
  }
  if (vocab_size > (int64_t{1} << 31) - 1) {
    return Invalid(absl::StrCat("vocab_size ", vocab_size, " does not fit token ids in int32"));
  }
  return absl::OkStatus();
}

int64_t LlamaConfig::ParameterCount() const {
  const int64_t q = num_attention_heads * head_dim();
  const int64_t kv = num_key_value_heads * head_dim();
  const int64_t attention = 2 * hidden_size * q + 2 * hidden_size * kv;
  const int64_t mlp = 3 * hidden_size * intermediate_size;
  const int64_t per_layer = attention + mlp + 2 * hidden_size;
  const int64_t embed = vocab_size * hidden_size;
  return embed * (tie_word_embeddings ? 1 : 2) + num_hidden_layers * per_layer + hidden_size;
}

int64_t LlamaConfig::ForwardFlopsPerToken(int64_t context) const {
  const int64_t q = num_attention_heads * head_dim();
  const int64_t kv = num_key_value_heads * head_dim();
  const int64_t matmul_params = num_hidden_layers * (2 * hidden_size * q + 2 * hidden_size * kv +
                                                     3 * hidden_size * intermediate_size) +
                                vocab_size * hidden_size;
  // Scores (q.k) and the weighted sum of values: 2 * context * heads * head_dim each.
  const int64_t attention = num_hidden_layers * 2 * (2 * context * q);
  return 2 * matmul_params + attention;
}

std::string LlamaConfig::Describe() const {
  return absl::StrFormat("llama d%d L%d h%d/kv%d%s ffn%d V%d ctx%d%s (%.2fM params)", hidden_size,
                         num_hidden_layers, num_attention_heads, num_key_value_heads,
                         attention_head_dim > 0 ? absl::StrCat(" hd", attention_head_dim) : "",
                         intermediate_size, vocab_size, max_position_embeddings,
                         tie_word_embeddings ? " tied" : "", ParameterCount() / 1e6);
}

nlohmann::json LlamaConfig::ToHuggingFaceJson() const {
  return nlohmann::json{
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_hidden_layers", num_hidden_layers},
      {"num_attention_heads", num_attention_heads},
      {"num_key_value_heads", num_key_value_heads},
      {"head_dim", head_dim()},
      {"max_position_embeddings", max_position_embeddings},
      {"rope_theta", rope_theta},
      {"rope_scaling", nullptr},
      {"rms_norm_eps", rms_norm_eps},
      {"tie_word_embeddings", tie_word_embeddings},
      {"hidden_act", "silu"},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"mlp_bias", false},
      {"bos_token_id", bos_token_id},
      {"eos_token_id", eos_token_id},
      {"initializer_range", 0.02},
      {"pretraining_tp", 1},
      {"use_cache", true},
      {"torch_dtype", "float32"},
  };
}

absl::StatusOr<LlamaConfig> LlamaConfig::FromHuggingFaceJson(const nlohmann::json& json) {
  if (!json.is_object()) return Invalid("config.json must hold a JSON object");
  const std::string type = json.value("model_type", std::string());
  if (type != "llama") {
    return Invalid(absl::StrCat("model_type is '", type,
                                "'; only Llama-family checkpoints (model_type \"llama\") load"));
  }
  LlamaConfig c;
  auto get_int = [&json](const char* key, int64_t* out, bool required) -> absl::Status {
    auto it = json.find(key);
    if (it == json.end() || it->is_null()) {
      return required ? Invalid(absl::StrCat("config.json lacks \"", key, "\"")) : absl::OkStatus();
    }
    if (!it->is_number_integer()) return Invalid(absl::StrCat("\"", key, "\" must be an integer"));
    *out = it->get<int64_t>();
    return absl::OkStatus();
  };
  for (auto [key, field] : std::vector<std::pair<const char*, int64_t*>>{
           {"vocab_size", &c.vocab_size},
           {"hidden_size", &c.hidden_size},
           {"intermediate_size", &c.intermediate_size},
           {"num_hidden_layers", &c.num_hidden_layers},
           {"num_attention_heads", &c.num_attention_heads}}) {
    if (absl::Status s = get_int(key, field, true); !s.ok()) return s;
  }
  c.num_key_value_heads = c.num_attention_heads;
  c.max_position_embeddings = 2048;
  for (auto [key, field] : std::vector<std::pair<const char*, int64_t*>>{
           {"num_key_value_heads", &c.num_key_value_heads},
           {"max_position_embeddings", &c.max_position_embeddings},
           {"bos_token_id", &c.bos_token_id},
           {"eos_token_id", &c.eos_token_id}}) {
    if (absl::Status s = get_int(key, field, false); !s.ok()) return s;
  }
  auto number = [&json](const char* key, double fallback) {
    auto it = json.find(key);
    return it != json.end() && it->is_number() ? it->get<double>() : fallback;
  };
  c.rope_theta = number("rope_theta", 10000.0);
  c.rms_norm_eps = number("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = json.value("tie_word_embeddings", false);
  if (json.value("hidden_act", std::string("silu")) != "silu") {
    return Invalid(absl::StrCat("hidden_act is '", json.value("hidden_act", std::string()),
                                "'; only silu (SwiGLU) is implemented"));
  }
  if (json.value("attention_bias", false) || json.value("mlp_bias", false)) {
    return Invalid(
        "attention_bias / mlp_bias are set; only bias-free Llama layers are implemented");
  }
  if (auto it = json.find("rope_scaling"); it != json.end() && !it->is_null()) {
    return Invalid("rope_scaling is set; only plain rotary embeddings are implemented");
  }
  if (auto it = json.find("head_dim"); it != json.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 1) {
      return Invalid("\"head_dim\" must be a positive integer");
    }
    // Kept only where it differs, so configs with the usual width compare
    // equal to those that leave it out.
    if (it->get<int64_t>() * c.num_attention_heads != c.hidden_size) {
      c.attention_head_dim = it->get<int64_t>();
    }
  }
  if (absl::Status s = c.Validate(); !s.ok()) return s;
  return c;
}

absl::StatusOr<LlamaConfig> LlamaConfig::Parse(const std::string& text, const LlamaConfig& base) {
  LlamaConfig c = base;
  bool kv_given = false;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    if (item == "tied") {
      c.tie_word_embeddings = true;
      continue;
    }
    if (item == "untied") {
      c.tie_word_embeddings = false;
      continue;
    }
    std::vector<std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    int64_t value = 0;
    if (kv.size() != 2 || !absl::SimpleAtoi(kv[1], &value)) {
      return Invalid(absl::StrCat("'", item,
                                  "' is not key=integer (keys: d, layers, heads, kv_heads, "
                                  "head_dim, ffn, vocab, ctx; or the word tied/untied)"));
    }
    const std::string& key = kv[0];
    if (key == "d") {
      c.hidden_size = value;
    } else if (key == "layers") {
      c.num_hidden_layers = value;
    } else if (key == "heads") {
      c.num_attention_heads = value;
    } else if (key == "kv_heads") {
      c.num_key_value_heads = value;
      kv_given = true;
    } else if (key == "head_dim") {
      c.attention_head_dim = value;
    } else if (key == "ffn") {
      c.intermediate_size = value;
    } else if (key == "vocab") {
      c.vocab_size = value;
    } else if (key == "ctx") {
      c.max_position_embeddings = value;
    } else {
      return Invalid(absl::StrCat("unknown key '", key,
                                  "' (keys: d, layers, heads, kv_heads, head_dim, ffn, vocab, "
                                  "ctx, tied)"));
    }
  }
  if (!kv_given && c.num_key_value_heads > c.num_attention_heads) {
    c.num_key_value_heads = c.num_attention_heads;
  }
  if (absl::Status s = c.Validate(); !s.ok()) return s;
  return c;
}

bool LlamaConfig::operator==(const LlamaConfig& o) const {
  return vocab_size == o.vocab_size && hidden_size == o.hidden_size &&
         intermediate_size == o.intermediate_size && num_hidden_layers == o.num_hidden_layers &&
         num_attention_heads == o.num_attention_heads &&
         num_key_value_heads == o.num_key_value_heads && head_dim() == o.head_dim() &&
         max_position_embeddings == o.max_position_embeddings && rope_theta == o.rope_theta &&
         rms_norm_eps == o.rms_norm_eps && tie_word_embeddings == o.tie_word_embeddings &&
         bos_token_id == o.bos_token_id && eos_token_id == o.eos_token_id;
}

}  // namespace retort::models
