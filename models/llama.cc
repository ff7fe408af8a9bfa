#include "models/llama.h"

#include <cmath>
#include <utility>

#include <torch/version.h>

#include "absl/strings/str_cat.h"

namespace retort::models {
namespace {

// cat(-x2, x1) for x = cat(x1, x2) along the last dimension.
torch::Tensor RotateHalf(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

torch::Tensor ApplyRotary(const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin) {
  return x * cos + RotateHalf(x) * sin;
}

// [B, kv, T, d] -> [B, kv * repeats, T, d], each head repeated in place
// (transformers' repeat_kv).
torch::Tensor RepeatKv(const torch::Tensor& x, int64_t repeats) {
  if (repeats == 1) return x;
  return x.repeat_interleave(repeats, /*dim=*/1);
}

}  // namespace

RmsNormImpl::RmsNormImpl(int64_t width, double eps, int64_t mean_dim)
    : eps_(eps), width_(width), mean_dim_(mean_dim == 0 ? width : mean_dim) {
  weight = register_parameter("weight", torch::ones({width}));
}

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) {
  const torch::Tensor x32 = x.to(torch::kFloat32);
  const torch::Tensor mean_square =
      mean_dim_ == width_ ? x32.pow(2).mean(-1, /*keepdim=*/true)
                          : x32.pow(2).sum(-1, /*keepdim=*/true) / static_cast<double>(mean_dim_);
  const torch::Tensor normed = x32 * torch::rsqrt(mean_square + eps_);
  return weight * normed.to(x.scalar_type());
}

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig& config, WeightInit init)
    : LlamaAttentionImpl(config, config.hidden_size, config.hidden_size, init) {}

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig& config, int64_t in_width,
                                       int64_t out_width, WeightInit init)
    : heads_(config.num_attention_heads),
      kv_heads_(config.num_key_value_heads),
      head_dim_(config.head_dim()),
      sliding_window_(config.sliding_window) {
  const bool bias = config.qkv_bias;
  q_proj = register_module("q_proj", Projection(in_width, heads_ * head_dim_, init, bias));
  k_proj = register_module("k_proj", Projection(in_width, kv_heads_ * head_dim_, init, bias));
  v_proj = register_module("v_proj", Projection(in_width, kv_heads_ * head_dim_, init, bias));
  o_proj = register_module("o_proj", Projection(heads_ * head_dim_, out_width, init));
  if (config.qk_norm) {
    q_norm = register_module("q_norm", RmsNorm(head_dim_, config.rms_norm_eps));
    k_norm = register_module("k_norm", RmsNorm(head_dim_, config.rms_norm_eps));
  }
}

void LlamaAttentionImpl::Project(const torch::Tensor& x, torch::Tensor* q, torch::Tensor* k,
                                 torch::Tensor* v) {
  const int64_t b = x.size(0), t = x.size(1);
  torch::Tensor qh = q_proj(x).view({b, t, heads_, head_dim_});
  torch::Tensor kh = k_proj(x).view({b, t, kv_heads_, head_dim_});
  if (q_norm) {  // Qwen3: each head normalised before the rotation
    qh = q_norm(qh);
    kh = k_norm(kh);
  }
  *q = qh.transpose(1, 2);
  *k = kh.transpose(1, 2);
  *v = v_proj(x).view({b, t, kv_heads_, head_dim_}).transpose(1, 2);
}

torch::Tensor LlamaAttentionImpl::Attend(const torch::Tensor& q, const torch::Tensor& k,
                                         const torch::Tensor& v, const torch::Tensor& allowed,
                                         bool causal) {
  const int64_t b = q.size(0), t = q.size(2);
  const torch::Tensor keys = RepeatKv(k, heads_ / kv_heads_);
  const torch::Tensor values = RepeatKv(v, heads_ / kv_heads_);
#if TORCH_VERSION_MAJOR >= 2
  torch::Tensor out =
      allowed.defined() ? at::scaled_dot_product_attention(q, keys, values, /*attn_mask=*/allowed,
                                                           /*dropout_p=*/0.0, /*is_causal=*/false)
                        : at::scaled_dot_product_attention(q, keys, values, /*attn_mask=*/{},
                                                           /*dropout_p=*/0.0, /*is_causal=*/causal);
#else
  // LibTorch 1.13 has no fused attention on the CPU: scores, a mask and a
  // float32 softmax, as transformers' eager path.
  torch::Tensor scores =
      (torch::matmul(q, keys.transpose(-2, -1)) / std::sqrt(static_cast<double>(head_dim_)))
          .to(torch::kFloat32);
  if (allowed.defined()) {
    scores = scores.masked_fill(allowed.logical_not(), -INFINITY);
  } else if (causal) {
    scores = scores.masked_fill(torch::ones({t, keys.size(2)}, torch::dtype(torch::kBool)).triu(1),
                                -INFINITY);
  }
  torch::Tensor out = torch::matmul(torch::softmax(scores, -1).to(q.scalar_type()), values);
#endif
  return o_proj(out.transpose(1, 2).reshape({b, t, heads_ * head_dim_}));
}

torch::Tensor LlamaAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                          const torch::Tensor& sin) {
  torch::Tensor q, k, v;
  Project(x, &q, &k, &v);
  const int64_t t = x.size(1);
  const torch::Tensor c = cos.to(x.scalar_type()), s = sin.to(x.scalar_type());
  q = ApplyRotary(q, c, s);
  k = ApplyRotary(k, c, s);
  // Masked: the future, and with a sliding window W whatever is W or more
  // positions back (transformers masks key j for query i when j <= i - W).
  if (sliding_window_ > 0 && t > sliding_window_) {
    const torch::Tensor visible =
        torch::ones({t, t}, torch::dtype(torch::kBool))
            .tril()
            .logical_and(
                torch::ones({t, t}, torch::dtype(torch::kBool)).triu(-sliding_window_ + 1));
    return Attend(q, k, v, visible, /*causal=*/false);
  }
  return Attend(q, k, v, /*allowed=*/{}, /*causal=*/true);
}

torch::Tensor LlamaAttentionImpl::Decode(const torch::Tensor& x, const DecodeStep& step,
                                         LayerKv* kv) {
  torch::Tensor q, k, v;
  Project(x, &q, &k, &v);
  const torch::Tensor c = step.cos.to(x.scalar_type()), s = step.sin.to(x.scalar_type());
  q = ApplyRotary(q, c, s);
  k = ApplyRotary(k, c, s);
  if (kv->keys.defined()) {
    k = torch::cat({kv->keys, k}, 2);
    v = torch::cat({kv->values, v}, 2);
  }
  kv->keys = k;
  kv->values = v;
  return Attend(q, k, v, step.allowed, /*causal=*/false);
}

LlamaMlpImpl::LlamaMlpImpl(const LlamaConfig& config, WeightInit init)
    : LlamaMlpImpl(config, config.hidden_size, config.hidden_size, init) {}

LlamaMlpImpl::LlamaMlpImpl(const LlamaConfig& config, int64_t in_width, int64_t out_width,
                           WeightInit init) {
  gate_proj = register_module("gate_proj", Projection(in_width, config.intermediate_size, init));
  up_proj = register_module("up_proj", Projection(in_width, config.intermediate_size, init));
  down_proj = register_module("down_proj", Projection(config.intermediate_size, out_width, init));
}

torch::Tensor LlamaMlpImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaConfig& config, WeightInit init) {
  self_attn = register_module("self_attn", LlamaAttention(config, init));
  mlp = register_module("mlp", LlamaMlp(config, init));
  input_layernorm =
      register_module("input_layernorm", RmsNorm(config.hidden_size, config.rms_norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RmsNorm(config.hidden_size, config.rms_norm_eps));
}

torch::Tensor LlamaDecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                             const torch::Tensor& sin) {
  const torch::Tensor h = x + self_attn(input_layernorm(x), cos, sin);
  return h + mlp(post_attention_layernorm(h));
}

torch::Tensor LlamaDecoderLayerImpl::Decode(const torch::Tensor& x, const DecodeStep& step,
                                            LayerKv* kv) {
  const torch::Tensor h = x + self_attn->Decode(input_layernorm(x), step, kv);
  return h + mlp(post_attention_layernorm(h));
}

LlamaBackboneImpl::LlamaBackboneImpl(const LlamaConfig& config, WeightInit init) {
  torch::nn::EmbeddingOptions embedding(config.vocab_size, config.hidden_size);
  // A given _weight skips Embedding's own normal_ draw.
  if (init == WeightInit::kUninitialized) {
    embedding._weight(torch::empty({config.vocab_size, config.hidden_size}));
  }
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(embedding));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i)
    layers->push_back(LlamaDecoderLayer(config, init));
  norm = register_module("norm", RmsNorm(config.hidden_size, config.rms_norm_eps));
}

LlamaModel::LlamaModel(const LlamaConfig& config, WeightInit init) : config_(config) {
  model = register_module("model", LlamaBackbone(config, init));
  if (!config.tie_word_embeddings) {
    lm_head = register_module("lm_head", Projection(config.hidden_size, config.vocab_size, init));
  }
  if (init == WeightInit::kRandom) {
    torch::NoGradGuard no_grad;
    for (auto& p : named_parameters()) {
      if (p.key().find("norm") == std::string::npos) p.value().normal_(0.0, 0.02);
    }
  }
  RotaryTables(config, &cos_, &sin_);
}

void RotaryTables(const LlamaConfig& config, torch::Tensor* cos, torch::Tensor* sin) {
  const int64_t d = config.head_dim();
  torch::Tensor inv_freq =
      1.0 / torch::pow(config.rope_theta,
                       torch::arange(0, d, 2, torch::kFloat64) / static_cast<double>(d));
  if (const LlamaConfig::RopeScaling& r = config.rope_scaling; r.factor > 0) {
    // transformers' _compute_llama3_parameters: long wavelengths slowed by
    // `factor`, short ones kept, the band between interpolated.
    const double old_context = static_cast<double>(r.original_max_position_embeddings);
    const double low_freq_wavelen = old_context / r.low_freq_factor;
    const double high_freq_wavelen = old_context / r.high_freq_factor;
    const torch::Tensor wavelen = 2 * M_PI / inv_freq;
    const torch::Tensor scaled =
        torch::where(wavelen > low_freq_wavelen, inv_freq / r.factor, inv_freq);
    const torch::Tensor smooth =
        (old_context / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
    const torch::Tensor smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
    const torch::Tensor medium =
        (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
    inv_freq = torch::where(medium, smoothed, scaled);
  }
  const torch::Tensor positions =
      torch::arange(config.max_position_embeddings, torch::kFloat64).unsqueeze(1);
  const torch::Tensor freqs = positions * inv_freq.unsqueeze(0);
  const torch::Tensor angles = torch::cat({freqs, freqs}, -1);
  *cos = angles.cos().to(torch::kFloat32);
  *sin = angles.sin().to(torch::kFloat32);
}

torch::Tensor LlamaModel::EmbeddingWeight() const { return model->embed_tokens->weight; }

torch::Tensor LlamaModel::OutputWeight() const {
  return lm_head ? lm_head->EffectiveWeight() : model->embed_tokens->weight;
}

torch::Tensor LlamaModel::forward(const torch::Tensor& tokens) {
  return ForwardWithHidden(tokens, {}, nullptr);
}

torch::Tensor LlamaModel::ForwardWithHidden(const torch::Tensor& tokens,
                                            const std::vector<std::string>& names,
                                            HiddenStates* hidden) {
  auto want = [&](const std::string& name) {
    return hidden != nullptr && std::find(names.begin(), names.end(), name) != names.end();
  };
  const int64_t t = tokens.size(1);
  const torch::Tensor cos = cos_.narrow(0, 0, t), sin = sin_.narrow(0, 0, t);
  torch::Tensor x = model->embed_tokens(tokens);
  if (want("embed")) (*hidden)["embed"] = x;
  for (size_t i = 0; i < model->layers->size(); ++i) {
    x = model->layers[i]->as<LlamaDecoderLayer>()->forward(x, cos, sin);
    const std::string name = absl::StrCat("block.", i);
    if (want(name)) (*hidden)[name] = x;
  }
  x = model->norm(x);
  if (want("final_norm")) (*hidden)["final_norm"] = x;
  return torch::matmul(x, OutputWeight().to(x.scalar_type()).t());
}

torch::Tensor LlamaModel::Decode(const torch::Tensor& tokens, const torch::Tensor& valid,
                                 KvCache* cache) {
  const DecodeStep step = cache->Advance(valid, cos_, sin_, config_.sliding_window);
  torch::Tensor x = model->embed_tokens(tokens);
  for (size_t i = 0; i < model->layers->size(); ++i) {
    x = model->layers[i]->as<LlamaDecoderLayer>()->Decode(x, step, &cache->layer(i));
  }
  x = model->norm(x);
  return torch::matmul(x, OutputWeight().to(x.scalar_type()).t());
}

std::vector<HiddenLayer> LlamaModel::HiddenLayers() const {
  std::vector<HiddenLayer> out;
  out.push_back({"embed", {config_.hidden_size}});
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    out.push_back({absl::StrCat("block.", i), {config_.hidden_size}});
  }
  out.push_back({"final_norm", {config_.hidden_size}});
  return out;
}

absl::StatusOr<std::shared_ptr<LlamaModel>> LlamaFromLayers(const LlamaModel& source,
                                                            const LlamaConfig& config,
                                                            std::vector<int64_t> layers) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  if (source.quantization.quantized()) {
    return absl::FailedPreconditionError(absl::StrCat("cannot initialise from a quantized model (",
                                                      source.quantization.Describe(),
                                                      "); initialise from the float checkpoint"));
  }
  const LlamaConfig& from = source.config();
  struct Width {
    const char* name;
    int64_t student, teacher;
  };
  for (const Width& w :
       {Width{"hidden_size", config.hidden_size, from.hidden_size},
        Width{"intermediate_size", config.intermediate_size, from.intermediate_size},
        Width{"num_attention_heads", config.num_attention_heads, from.num_attention_heads},
        Width{"num_key_value_heads", config.num_key_value_heads, from.num_key_value_heads},
        Width{"vocab_size", config.vocab_size, from.vocab_size}}) {
    if (w.student != w.teacher) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot initialise from the teacher's layers: ", w.name, " is ", w.student,
                       " in the student but ", w.teacher,
                       " in the teacher; widths must match (or initialise from scratch)"));
    }
  }
  if (config.model_type != from.model_type || config.qkv_bias != from.qkv_bias ||
      config.qk_norm != from.qk_norm) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot initialise a ", config.model_type, " student from a ", from.model_type,
        " teacher's layers (their blocks hold different tensors); give --model the teacher's "
        "family word (",
        from.model_type, ")"));
  }
  const int64_t n = config.num_hidden_layers;
  if (layers.empty()) {
    for (int64_t j = 0; j < n; ++j) {
      layers.push_back(n == 1 ? 0
                              : static_cast<int64_t>(std::llround(static_cast<double>(j) *
                                                                  (from.num_hidden_layers - 1) /
                                                                  static_cast<double>(n - 1))));
    }
  }
  if (static_cast<int64_t>(layers.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat(layers.size(), " teacher layers named for a ", n,
                                                   "-layer student; name one per student layer"));
  }
  for (int64_t l : layers) {
    if (l < 0 || l >= from.num_hidden_layers) {
      return absl::InvalidArgumentError(absl::StrCat("teacher layer ", l,
                                                     " does not exist; the teacher has layers 0..",
                                                     from.num_hidden_layers - 1));
    }
  }
  auto out = std::make_shared<LlamaModel>(config);
  auto& src = const_cast<LlamaModel&>(source);  // read only; ModuleList has no const access
  torch::NoGradGuard no_grad;
  auto copy = [](const torch::nn::Module& src, torch::nn::Module& dst) {
    auto s = src.named_parameters();
    for (auto& p : dst.named_parameters()) p.value().copy_(s[p.key()]);
  };
  copy(*src.model->embed_tokens, *out->model->embed_tokens);
  copy(*src.model->norm, *out->model->norm);
  for (int64_t j = 0; j < n; ++j) {
    copy(*src.model->layers[static_cast<size_t>(layers[j])], *out->model->layers[j]);
  }
  if (out->lm_head) out->lm_head->weight.copy_(source.OutputWeight());
  return out;
}

}  // namespace retort::models
