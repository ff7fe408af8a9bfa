#include "student/gguf_export.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "models/block_quant.h"
#include "student/gguf_vocabulary.h"

namespace retort::student {
namespace {

using models::GgmlType;
using models::GgufValue;

std::string Bytes(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.nbytes()));
}

// transformers' rotate-half head layout -> ggml's interleaved pairs (and back).
// Rows of a matrix, or entries of a bias.
torch::Tensor PermuteForGgml(const torch::Tensor& w, int64_t heads) {
  const int64_t half = w.size(0) / heads / 2;
  return w.reshape({heads, 2, half, -1}).transpose(1, 2).reshape(w.sizes());
}
torch::Tensor UnpermuteFromGgml(const torch::Tensor& w, int64_t heads) {
  const int64_t half = w.size(0) / heads / 2;
  return w.reshape({heads, half, 2, -1}).transpose(1, 2).reshape(w.sizes());
}

// Block bytes: the float16 scale, then the block's codes.
absl::StatusOr<std::string> EncodeQuantized(const torch::Tensor& w, GgmlType type) {
  const int bits = type == GgmlType::kQ8_0 ? 8 : 4;
  RETORT_ASSIGN_OR_RETURN(models::BlockQuantized q, models::QuantizeBlocks(w, bits, 32));
  const int64_t rows = q.rows(), blocks = q.cols() / 32;
  const torch::Tensor scale =
      q.scales.to(torch::kHalf).contiguous().view(torch::kUInt8).view({rows, blocks, 2});
  const torch::Tensor codes = q.codes.view({rows, blocks, 32});
  torch::Tensor payload;
  if (bits == 8) {
    payload = codes.view(torch::kUInt8);
  } else {
    // Byte j of a Q4_0 block: code j in the low nibble, code j + 16 in the high.
    const torch::Tensor u = (codes.to(torch::kInt16) + 8).to(torch::kUInt8);
    payload = u.narrow(-1, 0, 16) | (u.narrow(-1, 16, 16) * 16);
  }
  return Bytes(torch::cat({scale, payload}, -1));
}

torch::Tensor DecodeQuantized(const char* data, int64_t rows, int64_t cols, GgmlType type) {
  const int64_t blocks = cols / 32, block_bytes = models::GgmlBlockBytes(type);
  torch::Tensor raw = torch::empty({rows, blocks, block_bytes}, torch::kUInt8);
  std::memcpy(raw.data_ptr(), data, static_cast<size_t>(raw.nbytes()));
  const torch::Tensor scale = raw.narrow(-1, 0, 2)
                                  .contiguous()
                                  .view(torch::kHalf)
                                  .to(torch::kFloat32);  // [rows, blocks, 1]
  torch::Tensor codes;
  if (type == GgmlType::kQ8_0) {
    codes = raw.narrow(-1, 2, 32).contiguous().view(torch::kInt8).to(torch::kFloat32);
  } else {
    const torch::Tensor b = raw.narrow(-1, 2, 16);
    codes = torch::cat({(b & 15), torch::div(b, 16, "floor")}, -1).to(torch::kFloat32) - 8;
  }
  return (codes * scale).reshape({rows, cols});
}

absl::StatusOr<models::GgufTensorBytes> Encode(const std::string& name, const torch::Tensor& value,
                                               GgmlType type, GgufExportReport* report) {
  torch::Tensor w = value.detach().to(torch::kFloat32).contiguous();
  models::GgufTensorBytes out;
  out.name = name;
  for (int64_t d = w.dim() - 1; d >= 0; --d) out.dims.push_back(static_cast<uint64_t>(w.size(d)));
  if (w.dim() == 1) type = GgmlType::kF32;
  if ((type == GgmlType::kQ8_0 || type == GgmlType::kQ4_0) && w.size(-1) % 32 != 0) {
    type = GgmlType::kF16;
    report->fallback_tensors += 1;
  }
  out.type = type;
  switch (type) {
    case GgmlType::kF32:
      out.data = Bytes(w);
      break;
    case GgmlType::kF16:
      out.data = Bytes(w.to(torch::kHalf));
      break;
    case GgmlType::kBF16:
      out.data = Bytes(w.to(torch::kBFloat16));
      break;
    default: {
      RETORT_ASSIGN_OR_RETURN(out.data, EncodeQuantized(w, type));
    }
  }
  report->tensors += 1;
  return out;
}

// The GGUF name of each transformers tensor of a `layers`-block model, with
// the head count to permute by (0: no permutation).
struct NameMap {
  std::string hf, gguf;
  int64_t permute_heads = 0;
};

std::vector<NameMap> TensorNames(const models::LlamaConfig& c, const GgufLayout& layout) {
  const int64_t q_heads = layout.permute_rotary ? c.num_attention_heads : 0;
  const int64_t kv_heads = layout.permute_rotary ? c.num_key_value_heads : 0;
  std::vector<NameMap> names = {{"model.embed_tokens.weight", "token_embd.weight"}};
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string hf = absl::StrCat("model.layers.", i, ".");
    const std::string g = absl::StrCat("blk.", i, ".");
    names.push_back({hf + "input_layernorm.weight", g + "attn_norm.weight"});
    names.push_back({hf + "self_attn.q_proj.weight", g + "attn_q.weight", q_heads});
    names.push_back({hf + "self_attn.k_proj.weight", g + "attn_k.weight", kv_heads});
    names.push_back({hf + "self_attn.v_proj.weight", g + "attn_v.weight"});
    if (c.qkv_bias) {
      names.push_back({hf + "self_attn.q_proj.bias", g + "attn_q.bias", q_heads});
      names.push_back({hf + "self_attn.k_proj.bias", g + "attn_k.bias", kv_heads});
      names.push_back({hf + "self_attn.v_proj.bias", g + "attn_v.bias"});
    }
    if (c.qk_norm) {
      names.push_back({hf + "self_attn.q_norm.weight", g + "attn_q_norm.weight"});
      names.push_back({hf + "self_attn.k_norm.weight", g + "attn_k_norm.weight"});
    }
    names.push_back({hf + "self_attn.o_proj.weight", g + "attn_output.weight"});
    names.push_back({hf + "post_attention_layernorm.weight", g + "ffn_norm.weight"});
    names.push_back({hf + "mlp.gate_proj.weight", g + "ffn_gate.weight"});
    names.push_back({hf + "mlp.up_proj.weight", g + "ffn_up.weight"});
    names.push_back({hf + "mlp.down_proj.weight", g + "ffn_down.weight"});
  }
  names.push_back({"model.norm.weight", "output_norm.weight"});
  if (!c.tie_word_embeddings) names.push_back({"lm_head.weight", "output.weight"});
  return names;
}

// Llama 3's rope scaling as llama.cpp applies it: a float32 divisor for each
// rotary frequency ("rope_freqs.weight", [head_dim / 2]), computed as its
// converter (convert_hf_to_gguf.py) does from transformers' formula.
torch::Tensor Llama3RopeFactors(const models::LlamaConfig& c) {
  const models::LlamaConfig::RopeScaling& r = c.rope_scaling;
  const int64_t d = c.head_dim();
  const double old_context = static_cast<double>(r.original_max_position_embeddings);
  const double low_freq_wavelen = old_context / r.low_freq_factor;
  const double high_freq_wavelen = old_context / r.high_freq_factor;
  torch::Tensor factors = torch::empty({d / 2}, torch::kFloat32);
  for (int64_t i = 0; i < d / 2; ++i) {
    const double freq = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / d);
    const double wavelen = 2 * M_PI / freq;
    double f = 1;
    if (wavelen > low_freq_wavelen) {
      f = r.factor;
    } else if (wavelen >= high_freq_wavelen) {
      const double smooth =
          (old_context / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      f = 1 / ((1 - smooth) / r.factor + smooth);
    }
    factors[i] = static_cast<float>(f);
  }
  return factors;
}

// The shortest decimal that is the same float32 as `v`: GGUF stores
// rms_norm_eps and rope_theta as float32, and 1e-5 should read back as 1e-5.
double ShortestFloat32(double v) {
  const float f = static_cast<float>(v);
  for (int digits = 1; digits <= 9; ++digits) {
    char buffer[40];
    std::snprintf(buffer, sizeof(buffer), "%.*g", digits, static_cast<double>(f));
    const double parsed = std::strtod(buffer, nullptr);
    if (static_cast<float>(parsed) == f) return parsed;
  }
  return f;
}

// llama.cpp's llama_ftype for a file whose matrices are `type`.
uint32_t FileType(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
      return 0;
    case GgmlType::kF16:
      return 1;
    case GgmlType::kQ4_0:
      return 2;
    case GgmlType::kQ8_0:
      return 7;
    case GgmlType::kBF16:
      return 32;
  }
  return 0;
}

}  // namespace

absl::StatusOr<GgufLayout> GgufLayoutFor(const models::LlamaConfig& c) {
  const std::string& family = c.model_type;
  auto lacks = [&](const std::string& arch, const std::string& feature) {
    return absl::UnimplementedError(absl::StrCat("GGUF export: a ", family, " model with ", feature,
                                                 " cannot be written for llama.cpp: ", "its '",
                                                 arch, "' architecture has no ", feature, " (",
                                                 c.Describe(), ")"));
  };
  GgufLayout layout;
  layout.context_length = c.max_position_embeddings;
  if (family == "llama" || family == "mistral") {
    layout.architecture = "llama";
    layout.permute_rotary = true;
    if (c.qkv_bias) return lacks("llama", "q/k/v biases");
    if (c.qk_norm) return lacks("llama", "q/k norms");
    if (family == "mistral" && c.rope_scaling.factor > 0) {
      return lacks("llama", "llama3 rope scaling together with a sliding window");
    }
    if (c.sliding_window > 0 && c.sliding_window < c.max_position_embeddings) {
      layout.context_length = c.sliding_window;
      layout.note = absl::StrCat(
          "llama.cpp's llama architecture attends to the whole context, not a sliding window: "
          "the file states context_length ",
          c.sliding_window, " (the window), within which the two are the same function");
    }
    return layout;
  }
  if (family == "qwen2" || family == "qwen3") {
    layout.architecture = family;
    if (c.rope_scaling.factor > 0) return lacks(family, "llama3 rope scaling");
    if (c.sliding_window > 0) return lacks(family, "sliding window");
    if (family == "qwen2" && c.qk_norm) return lacks("qwen2", "q/k norms");
    if (family == "qwen3" && !c.qk_norm) return lacks("qwen3", "attention without q/k norms");
    if (family == "qwen2" && c.num_attention_heads * c.head_dim() != c.hidden_size) {
      return lacks("qwen2",
                   absl::StrCat("heads narrower than hidden_size / heads (", c.num_attention_heads,
                                " heads of ", c.head_dim(), " in a ", c.hidden_size,
                                "-wide stream, as head pruning leaves)"));
    }
    return layout;
  }
  return absl::UnimplementedError(
      absl::StrCat("GGUF export: model_type '", family, "' has no llama.cpp architecture here (",
                   c.Describe(), "); llama, mistral, qwen2 and qwen3 are exported"));
}

absl::StatusOr<GgmlType> ParseGgufType(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "f32") return GgmlType::kF32;
  if (lower == "f16") return GgmlType::kF16;
  if (lower == "q8_0") return GgmlType::kQ8_0;
  if (lower == "q4_0") return GgmlType::kQ4_0;
  return absl::InvalidArgumentError(
      absl::StrCat("GGUF type '", name, "' is not one we write; use f32, f16, q8_0 or q4_0"));
}

absl::StatusOr<GgufExportReport> ExportLlamaGguf(models::LlamaModel& model, const std::string& path,
                                                 const GgufExportOptions& options) {
  const models::LlamaConfig& c = model.config();
  RETORT_ASSIGN_OR_RETURN(const GgufLayout layout, GgufLayoutFor(c));
  RETORT_ASSIGN_OR_RETURN(GgufMetadata vocabulary,
                          GgufVocabularyMetadata(options.tokenizer_model, c));
  const std::string a = layout.architecture + ".";
  auto u32 = [](int64_t v) { return GgufValue::U32(static_cast<uint32_t>(v)); };
  std::vector<std::pair<std::string, GgufValue>> meta = {
      {"general.architecture", GgufValue::String(layout.architecture)},
      {"general.name", GgufValue::String(options.name)},
      {"general.file_type", GgufValue::U32(FileType(options.type))},
      {"general.quantization_version", GgufValue::U32(2)},
      {a + "context_length", u32(layout.context_length)},
      {a + "embedding_length", u32(c.hidden_size)},
      {a + "block_count", u32(c.num_hidden_layers)},
      {a + "feed_forward_length", u32(c.intermediate_size)},
      {a + "rope.dimension_count", u32(c.head_dim())},
      {a + "attention.head_count", u32(c.num_attention_heads)},
      {a + "attention.head_count_kv", u32(c.num_key_value_heads)},
      {a + "attention.layer_norm_rms_epsilon", GgufValue::F32(static_cast<float>(c.rms_norm_eps))},
      {a + "rope.freq_base", GgufValue::F32(static_cast<float>(c.rope_theta))},
      // llama.cpp takes the head width from these when they are present
      // (n_embd / n_head otherwise); heads pruned structurally need them.
      {a + "attention.key_length", u32(c.head_dim())},
      {a + "attention.value_length", u32(c.head_dim())},
      {a + "vocab_size", u32(c.vocab_size)},
  };
  meta.insert(meta.end(), vocabulary.begin(), vocabulary.end());

  std::map<std::string, torch::Tensor> weights;
  torch::NoGradGuard no_grad;
  for (const auto& p : model.named_parameters()) weights[p.key()] = p.value();
  for (auto& [name, projection] : model.Projections()) {
    weights[name + ".weight"] = projection->EffectiveWeight();
  }
  GgufExportReport report;
  std::vector<models::GgufTensorBytes> tensors;
  for (const NameMap& n : TensorNames(c, layout)) {
    torch::Tensor w = weights.at(n.hf);
    if (n.permute_heads > 0) w = PermuteForGgml(w, n.permute_heads);
    RETORT_ASSIGN_OR_RETURN(models::GgufTensorBytes t, Encode(n.gguf, w, options.type, &report));
    tensors.push_back(std::move(t));
  }
  if (c.rope_scaling.factor > 0) {
    RETORT_ASSIGN_OR_RETURN(
        models::GgufTensorBytes t,
        Encode("rope_freqs.weight", Llama3RopeFactors(c), options.type, &report));
    tensors.push_back(std::move(t));
  }
  report.layout = layout;
  RETORT_ASSIGN_OR_RETURN(std::string bytes, models::SerializeGguf(meta, tensors));
  report.bytes = static_cast<int64_t>(bytes.size());
  RETORT_RETURN_IF_ERROR(WriteFileAtomically(path, bytes));
  return report;
}

absl::StatusOr<std::shared_ptr<models::LlamaModel>> ImportLlamaGguf(const std::string& path) {
  RETORT_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  absl::StatusOr<models::GgufFile> file = models::ParseGguf(bytes);
  if (!file.ok()) {
    return absl::Status(file.status().code(), absl::StrCat(path, ": ", file.status().message()));
  }
  auto bad = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat(path, ": ", what));
  };
  const GgufValue* arch = file->Find("general.architecture");
  if (arch == nullptr || arch->type != models::GgufValueType::kString) {
    return bad("general.architecture is missing");
  }
  const std::string& architecture = arch->string;
  if (architecture != "llama" && architecture != "qwen2" && architecture != "qwen3") {
    return absl::UnimplementedError(absl::StrCat(path, ": architecture '", architecture,
                                                 "'; llama, qwen2 and qwen3 models are imported"));
  }
  const std::string a = architecture + ".";
  auto integer = [&](const std::string& key, int64_t* out) -> absl::Status {
    const GgufValue* v = file->Find(key);
    if (v == nullptr || v->type == models::GgufValueType::kString ||
        v->type == models::GgufValueType::kArray || v->type == models::GgufValueType::kF32 ||
        v->type == models::GgufValueType::kF64) {
      return bad(absl::StrCat(key, " is missing or not an integer"));
    }
    *out = v->integer;
    return absl::OkStatus();
  };
  auto real = [&](const std::string& key, double* out) {
    const GgufValue* v = file->Find(key);
    if (v != nullptr &&
        (v->type == models::GgufValueType::kF32 || v->type == models::GgufValueType::kF64)) {
      *out = ShortestFloat32(v->real);
    }
  };
  models::LlamaConfig c;
  RETORT_RETURN_IF_ERROR(integer(a + "embedding_length", &c.hidden_size));
  RETORT_RETURN_IF_ERROR(integer(a + "block_count", &c.num_hidden_layers));
  RETORT_RETURN_IF_ERROR(integer(a + "feed_forward_length", &c.intermediate_size));
  RETORT_RETURN_IF_ERROR(integer(a + "attention.head_count", &c.num_attention_heads));
  RETORT_RETURN_IF_ERROR(integer(a + "context_length", &c.max_position_embeddings));
  c.num_key_value_heads = c.num_attention_heads;
  if (file->Find(a + "attention.head_count_kv") != nullptr) {
    RETORT_RETURN_IF_ERROR(integer(a + "attention.head_count_kv", &c.num_key_value_heads));
  }
  if (file->Find(a + "attention.key_length") != nullptr) {
    int64_t key_length = 0, value_length = 0;
    RETORT_RETURN_IF_ERROR(integer(a + "attention.key_length", &key_length));
    value_length = key_length;
    if (file->Find(a + "attention.value_length") != nullptr) {
      RETORT_RETURN_IF_ERROR(integer(a + "attention.value_length", &value_length));
    }
    if (value_length != key_length) {
      return bad(absl::StrCat(a, "attention.key_length ", key_length, " and value_length ",
                              value_length, " differ; Llama heads have one width"));
    }
    if (c.num_attention_heads < 1 || key_length * c.num_attention_heads != c.hidden_size) {
      c.attention_head_dim = key_length;
    }
  }
  if (file->Find("tokenizer.ggml.bos_token_id") != nullptr) {
    RETORT_RETURN_IF_ERROR(integer("tokenizer.ggml.bos_token_id", &c.bos_token_id));
  }
  if (file->Find("tokenizer.ggml.eos_token_id") != nullptr) {
    RETORT_RETURN_IF_ERROR(integer("tokenizer.ggml.eos_token_id", &c.eos_token_id));
  }
  real(a + "rope.freq_base", &c.rope_theta);
  real(a + "attention.layer_norm_rms_epsilon", &c.rms_norm_eps);
  std::map<std::string, const models::GgufTensorInfo*> infos;
  for (const auto& t : file->tensors) infos[t.name] = &t;
  auto embd = infos.find("token_embd.weight");
  if (embd == infos.end() || embd->second->dims.size() != 2) {
    return bad("token_embd.weight is missing or not a matrix");
  }
  c.vocab_size = static_cast<int64_t>(embd->second->dims[1]);
  c.tie_word_embeddings = infos.count("output.weight") == 0;
  if (infos.count("rope_freqs.weight") != 0) {
    return absl::UnimplementedError(
        absl::StrCat(path,
                     ": rope_freqs.weight (Llama 3 rope scaling) is not imported: the four llama3 "
                     "scaling parameters are not recovered from its divisors"));
  }
  // The family, from the tensors each block holds.
  c.model_type = architecture;
  c.qkv_bias = infos.count("blk.0.attn_q.bias") != 0;
  c.qk_norm = infos.count("blk.0.attn_q_norm.weight") != 0;
  if (architecture == "llama" && (c.qkv_bias || c.qk_norm)) {
    return absl::UnimplementedError(absl::StrCat(
        path, ": a llama file with q/k/v biases or q/k norms is not one of the layouts we read"));
  }
  if (absl::Status s = c.Validate(); !s.ok()) {
    return bad(absl::StrCat("its hyper-parameters do not make a model: ", s.message()));
  }
  // The hyper-parameters must describe the tensors the file holds (which the
  // file's size bounds) before anything is allocated for them.
  if (static_cast<uint64_t>(c.hidden_size) != embd->second->dims[0]) {
    return bad(absl::StrCat(a, "embedding_length ", c.hidden_size,
                            " is not token_embd.weight's width ", embd->second->dims[0]));
  }
  if (static_cast<uint64_t>(c.num_hidden_layers) * 9 + 2 > file->tensors.size()) {
    return bad(absl::StrCat(a, "block_count ", c.num_hidden_layers, " needs more than the ",
                            file->tensors.size(), " tensors the file holds"));
  }
  auto up = infos.find("blk.0.ffn_up.weight");
  if (up == infos.end() || up->second->dims.size() != 2 ||
      up->second->dims[1] != static_cast<uint64_t>(c.intermediate_size)) {
    return bad(absl::StrCat(a, "feed_forward_length ", c.intermediate_size,
                            " does not match blk.0.ffn_up.weight"));
  }
  auto q = infos.find("blk.0.attn_q.weight");
  if (q == infos.end() || q->second->dims.size() != 2 ||
      q->second->dims[1] != static_cast<uint64_t>(c.num_attention_heads * c.head_dim())) {
    return bad(absl::StrCat(a, "attention.head_count ", c.num_attention_heads, " heads of width ",
                            c.head_dim(), " do not match blk.0.attn_q.weight"));
  }
  constexpr int64_t kMaxContext = int64_t{1} << 17;
  if (c.max_position_embeddings > kMaxContext) {
    return bad(absl::StrCat(a, "context_length ", c.max_position_embeddings, " is above the ",
                            kMaxContext, " this importer builds tables for"));
  }
  auto model = std::make_shared<models::LlamaModel>(c);
  std::map<std::string, torch::Tensor> params;
  for (auto& p : model->named_parameters()) params[p.key()] = p.value();
  GgufLayout layout;
  layout.architecture = architecture;
  layout.permute_rotary = architecture == "llama";
  for (const NameMap& n : TensorNames(c, layout)) {
    auto it = infos.find(n.gguf);
    if (it == infos.end()) return bad(absl::StrCat("tensor ", n.gguf, " is missing"));
    const models::GgufTensorInfo& info = *it->second;
    torch::Tensor& param = params.at(n.hf);
    std::vector<uint64_t> want;
    for (int64_t d = param.dim() - 1; d >= 0; --d)
      want.push_back(static_cast<uint64_t>(param.size(d)));
    if (info.dims != want) {
      return bad(absl::StrCat("tensor ", n.gguf, " has the wrong shape for this config"));
    }
    const char* data = bytes.data() + file->data_start + info.offset;
    const int64_t cols = param.size(-1), rows = param.numel() / cols;
    torch::Tensor w;
    if (info.type == GgmlType::kQ8_0 || info.type == GgmlType::kQ4_0) {
      w = DecodeQuantized(data, rows, cols, info.type);
    } else {
      const torch::ScalarType st = info.type == GgmlType::kF32   ? torch::kFloat32
                                   : info.type == GgmlType::kF16 ? torch::kHalf
                                                                 : torch::kBFloat16;
      w = torch::empty({rows, cols}, st);
      std::memcpy(w.data_ptr(), data, static_cast<size_t>(w.nbytes()));
      w = w.to(torch::kFloat32);
    }
    if (!torch::isfinite(w).all().item<bool>()) {
      return bad(absl::StrCat("tensor ", n.gguf, " holds NaN or infinity"));
    }
    w = w.view(param.sizes());
    if (n.permute_heads > 0) w = UnpermuteFromGgml(w, n.permute_heads);
    torch::NoGradGuard no_grad;
    param.copy_(w);
  }
  model->eval();
  return model;
}

}  // namespace retort::student
