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
  if (model_type != "llama" && model_type != "qwen2" && model_type != "qwen3" &&
      model_type != "mistral") {
    return Invalid(
        absl::StrCat("model_type '", model_type, "' is not one of llama, qwen2, qwen3, mistral"));
  }
  if (sliding_window < 0) {
    return Invalid(absl::StrCat("sliding_window must be >= 0 (0: none), got ", sliding_window));
  }
  if (rope_scaling.factor != 0 &&
      (!(rope_scaling.factor >= 1) ||
       !(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor) ||
       !(rope_scaling.low_freq_factor > 0) || rope_scaling.original_max_position_embeddings < 1)) {
    return Invalid(
        "rope_scaling (llama3) needs factor >= 1, 0 < low_freq_factor < high_freq_factor and "
        "original_max_position_embeddings >= 1");
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
  const int64_t biases = qkv_bias ? q + 2 * kv : 0;
  const int64_t head_norms = qk_norm ? 2 * head_dim() : 0;
  const int64_t per_layer = attention + biases + head_norms + mlp + 2 * hidden_size;
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
  std::string features;
  if (qkv_bias) absl::StrAppend(&features, " qkv-bias");
  if (qk_norm) absl::StrAppend(&features, " qk-norm");
  if (sliding_window > 0) absl::StrAppend(&features, " window", sliding_window);
  if (rope_scaling.factor > 0) absl::StrAppend(&features, " rope-llama3x", rope_scaling.factor);
  return absl::StrFormat("%s d%d L%d h%d/kv%d%s ffn%d V%d ctx%d%s%s (%.2fM params)", model_type,
                         hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
                         attention_head_dim > 0 ? absl::StrCat(" hd", attention_head_dim) : "",
                         intermediate_size, vocab_size, max_position_embeddings,
                         tie_word_embeddings ? " tied" : "", features, ParameterCount() / 1e6);
}

nlohmann::json LlamaConfig::ToHuggingFaceJson() const {
  const char* architecture = model_type == "qwen2"     ? "Qwen2ForCausalLM"
                             : model_type == "qwen3"   ? "Qwen3ForCausalLM"
                             : model_type == "mistral" ? "MistralForCausalLM"
                                                       : "LlamaForCausalLM";
  nlohmann::json scaling = nullptr;
  if (rope_scaling.factor > 0) {
    scaling = {{"rope_type", "llama3"},
               {"factor", rope_scaling.factor},
               {"low_freq_factor", rope_scaling.low_freq_factor},
               {"high_freq_factor", rope_scaling.high_freq_factor},
               {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings}};
  }
  nlohmann::json json{
      {"architectures", {architecture}},
      {"model_type", model_type},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_hidden_layers", num_hidden_layers},
      {"num_attention_heads", num_attention_heads},
      {"num_key_value_heads", num_key_value_heads},
      {"head_dim", head_dim()},
      {"max_position_embeddings", max_position_embeddings},
      {"rope_theta", rope_theta},
      {"rope_scaling", scaling},
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
  if (model_type == "qwen2" || model_type == "qwen3") {
    json["use_sliding_window"] = false;
    json["sliding_window"] = nullptr;
    json["max_window_layers"] = num_hidden_layers;
  }
  if (model_type == "qwen2") json.erase("attention_bias");  // Qwen2 always has q/k/v biases
  if (model_type == "mistral") {
    json["sliding_window"] = sliding_window > 0 ? nlohmann::json(sliding_window) : nullptr;
  }
  return json;
}

absl::StatusOr<LlamaConfig> LlamaConfig::FromHuggingFaceJson(const nlohmann::json& json) {
  if (!json.is_object()) return Invalid("config.json must hold a JSON object");
  const std::string type = json.value("model_type", std::string());
  if (type != "llama" && type != "qwen2" && type != "qwen3" && type != "mistral") {
    return Invalid(absl::StrCat("model_type is '", type,
                                "'; the families implemented are llama, qwen2 (Qwen2, Qwen2.5), "
                                "qwen3 and mistral"));
  }
  LlamaConfig c;
  c.model_type = type;
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
  auto flag = [&json](const char* key) {
    auto it = json.find(key);
    return it != json.end() && it->is_boolean() && it->get<bool>();
  };
  if (flag("attention_bias")) {
    return Invalid(
        absl::StrCat("attention_bias is true (biases on q/k/v and o_proj): not "
                     "implemented for model_type ",
                     type, " (only Qwen2's q/k/v biases are)"));
  }
  if (flag("mlp_bias")) return Invalid("mlp_bias is true: MLP biases are not implemented");
  c.qkv_bias = type == "qwen2";
  c.qk_norm = type == "qwen3";
  if ((type == "qwen2" || type == "qwen3") && flag("use_sliding_window")) {
    return Invalid(
        "use_sliding_window is true: Qwen's sliding window on the layers from max_window_layers "
        "on is not implemented");
  }
  if (type == "mistral") {
    if (auto it = json.find("sliding_window"); it != json.end() && !it->is_null()) {
      if (!it->is_number_integer() || it->get<int64_t>() < 1) {
        return Invalid("\"sliding_window\" must be a positive integer or null");
      }
      c.sliding_window = it->get<int64_t>();
    }
  }
  if (auto it = json.find("rope_scaling"); it != json.end() && !it->is_null()) {
    if (!it->is_object()) return Invalid("\"rope_scaling\" must be an object or null");
    const std::string rope_type =
        it->value("rope_type", it->value("type", std::string("(none given)")));
    if (rope_type == "default") {
      // transformers' name for plain rotary embeddings
    } else if (rope_type != "llama3") {
      return Invalid(absl::StrCat("rope_scaling of type '", rope_type,
                                  "' is not implemented (only \"llama3\" is)"));
    } else {
      const nlohmann::json& r = *it;
      auto num = [&r](const char* key) -> absl::StatusOr<double> {
        auto f = r.find(key);
        if (f == r.end() || !f->is_number()) {
          return Invalid(absl::StrCat("rope_scaling (llama3) lacks the number \"", key, "\""));
        }
        return f->get<double>();
      };
      for (auto [key, field] : std::vector<std::pair<const char*, double*>>{
               {"factor", &c.rope_scaling.factor},
               {"low_freq_factor", &c.rope_scaling.low_freq_factor},
               {"high_freq_factor", &c.rope_scaling.high_freq_factor}}) {
        absl::StatusOr<double> v = num(key);
        if (!v.ok()) return v.status();
        *field = *v;
      }
      absl::StatusOr<double> old = num("original_max_position_embeddings");
      if (!old.ok()) return old.status();
      c.rope_scaling.original_max_position_embeddings = static_cast<int64_t>(*old);
    }
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
    if (item == "llama" || item == "qwen2" || item == "qwen3" || item == "mistral") {
      c.model_type = std::string(item);
      c.qkv_bias = item == "qwen2";
      c.qk_norm = item == "qwen3";
      if (item != "mistral") c.sliding_window = 0;
      continue;
    }
    std::vector<std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    int64_t value = 0;
    if (kv.size() != 2 || !absl::SimpleAtoi(kv[1], &value)) {
      return Invalid(absl::StrCat("'", item,
                                  "' is not key=integer (keys: d, layers, heads, kv_heads, "
                                  "head_dim, ffn, vocab, ctx, window; or the words tied/untied "
                                  "and llama/qwen2/qwen3/mistral)"));
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
    } else if (key == "window") {
      c.sliding_window = value;
    } else {
      return Invalid(absl::StrCat("unknown key '", key,
                                  "' (keys: d, layers, heads, kv_heads, head_dim, ffn, vocab, "
                                  "ctx, window, tied, llama/qwen2/qwen3/mistral)"));
    }
  }
  if (!kv_given && c.num_key_value_heads > c.num_attention_heads) {
    c.num_key_value_heads = c.num_attention_heads;
  }
  if (c.sliding_window > 0 && c.model_type != "mistral") {
    return Invalid("window=N (a sliding window) is Mistral's; add the word mistral");
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
         bos_token_id == o.bos_token_id && eos_token_id == o.eos_token_id &&
         model_type == o.model_type && qkv_bias == o.qkv_bias && qk_norm == o.qk_norm &&
         sliding_window == o.sliding_window && rope_scaling == o.rope_scaling;
}

}  // namespace retort::models
