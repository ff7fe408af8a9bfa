#include "student/slice.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace retort::student {
namespace {

using torch::Tensor;

// rmsnorm without a scale, dividing by the original width `d`.
Tensor Normalize(const Tensor& x, int64_t d, double eps) {
  return x * torch::rsqrt(x.pow(2).sum(-1, /*keepdim=*/true) / static_cast<double>(d) + eps);
}

// Eigenvectors of the normalised signal's covariance, by decreasing
// eigenvalue, and the share of the eigenvalue sum the first `keep` carry.
Tensor Principal(const Tensor& x, int64_t d, double eps, int64_t keep, double* kept_energy) {
  const Tensor flat = Normalize(x, d, eps).reshape({-1, x.size(-1)});
  const Tensor covariance = torch::matmul(flat.t(), flat);
  auto [values, vectors] = at::linalg_eigh(covariance, "L");
  const Tensor order = torch::arange(values.size(0) - 1, -1, -1, torch::kLong);
  values = values.index_select(0, order).clamp_min(0);
  *kept_energy = (values.narrow(0, 0, keep).sum() / values.sum()).item<double>();
  return vectors.index_select(1, order);
}

}  // namespace

absl::StatusOr<std::shared_ptr<models::SlicedLlamaModel>> SliceLlama(
    models::LlamaModel& model, const data::Dataset& calibration, const SliceOptions& options,
    SliceReport* report) {
  if (!(options.fraction >= 0.0 && options.fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--fraction must be in [0, 1), got ", options.fraction));
  }
  if (model.quantization.quantized()) {
    return absl::FailedPreconditionError("slice the float model, then quantize");
  }
  if (calibration.size() == 0) return absl::InvalidArgumentError("the calibration data is empty");
  const models::LlamaConfig& c = model.config();
  const int64_t d = c.hidden_size;
  const double eps = c.rms_norm_eps;
  int64_t width =
      static_cast<int64_t>(std::llround(static_cast<double>(d) * (1.0 - options.fraction)));
  if (options.multiple_of > 1) {
    width = std::max(options.multiple_of,
                     (width + options.multiple_of / 2) / options.multiple_of * options.multiple_of);
  }
  width = std::min(width, d);
  SliceReport local;
  local.width = width;

  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  // A float64 copy with every norm scale folded into the matrices reading it
  // (the final norm's into an untied output head; a tied model keeps it).
  models::LlamaConfig untied = c;
  untied.tie_word_embeddings = false;
  auto folded = std::make_shared<models::LlamaModel>(untied);
  {
    auto src = model.named_parameters();
    for (auto& p : folded->named_parameters()) {
      p.value().copy_(p.key() == "lm_head.weight" ? model.OutputWeight() : src[p.key()]);
    }
  }
  folded->to(torch::kFloat64);
  folded->eval();
  for (size_t i = 0; i < folded->model->layers->size(); ++i) {
    auto* layer = folded->model->layers[i]->as<models::LlamaDecoderLayer>();
    const Tensor g1 = layer->input_layernorm->weight.unsqueeze(0);
    const Tensor g2 = layer->post_attention_layernorm->weight.unsqueeze(0);
    for (auto* p :
         {&layer->self_attn->q_proj, &layer->self_attn->k_proj, &layer->self_attn->v_proj}) {
      (*p)->weight.mul_(g1);
    }
    layer->mlp->gate_proj->weight.mul_(g2);
    layer->mlp->up_proj->weight.mul_(g2);
  }
  folded->lm_head->weight.mul_(folded->model->norm->weight.unsqueeze(0));

  // The calibration tokens.
  const int64_t n = options.calibration_sequences <= 0
                        ? calibration.size()
                        : std::min(options.calibration_sequences, calibration.size());
  std::vector<int64_t> indices(static_cast<size_t>(n));
  std::iota(indices.begin(), indices.end(), 0);
  const Tensor tokens = calibration.GetBatch(indices).inputs;
  const int64_t t = tokens.size(1);
  Tensor cos, sin;
  models::RotaryTables(untied, &cos, &sin);
  cos = cos.narrow(0, 0, t).to(torch::kFloat64);
  sin = sin.narrow(0, 0, t).to(torch::kFloat64);
  // Runs `f` over the sequences in batches, concatenating the results.
  auto batched = [&](const std::function<Tensor(int64_t, int64_t)>& f) {
    std::vector<Tensor> parts;
    for (int64_t b = 0; b < n; b += options.batch_size) {
      parts.push_back(f(b, std::min(options.batch_size, n - b)));
    }
    return torch::cat(parts, 0);
  };

  auto sliced = std::make_shared<models::SlicedLlamaModel>(c, width, options.fraction);
  sliced->to(torch::kFloat64);
  double energy = 0;
  // The embeddings. A tied model keeps its matrix and rotates after it.
  const bool tied = c.tie_word_embeddings;
  Tensor full = folded->model->embed_tokens(tokens);  // [n, t, d], original basis
  Tensor q_in = Principal(full, d, eps, width, &energy).narrow(1, 0, width);
  local.kept_energy.push_back(energy);
  if (tied) {
    sliced->embed_tokens->weight.copy_(folded->model->embed_tokens->weight);
    sliced->embed_Q.copy_(q_in);
  } else {
    sliced->embed_tokens->weight.copy_(torch::matmul(folded->model->embed_tokens->weight, q_in));
  }
  Tensor x = torch::matmul(full, q_in);  // [n, t, width], the sliced stream
  for (size_t i = 0; i < folded->model->layers->size(); ++i) {
    auto* layer = folded->model->layers[i]->as<models::LlamaDecoderLayer>();
    auto* out = sliced->layers[i]->as<models::SlicedBlock>();
    // Attention, in the original basis, reading the sliced stream.
    const Tensor attention = batched([&](int64_t b, int64_t size) {
      const Tensor xn = torch::matmul(Normalize(x.narrow(0, b, size), d, eps), q_in.t());
      return layer->self_attn->forward(xn, cos, sin);
    });
    const Tensor h_full = torch::matmul(x, q_in.t()) + attention;
    const Tensor q_mid = Principal(h_full, d, eps, width, &energy).narrow(1, 0, width);
    local.kept_energy.push_back(energy);
    for (auto [from, to] : {std::pair{layer->self_attn->q_proj, out->self_attn->q_proj},
                            std::pair{layer->self_attn->k_proj, out->self_attn->k_proj},
                            std::pair{layer->self_attn->v_proj, out->self_attn->v_proj}}) {
      to->weight.copy_(torch::matmul(from->weight, q_in));
    }
    // Biases are added to the projections' outputs and q/k norms act on the
    // heads: neither meets the rotated stream, so both are kept as they are.
    if (c.qkv_bias) {
      out->self_attn->q_proj->bias.copy_(layer->self_attn->q_proj->bias);
      out->self_attn->k_proj->bias.copy_(layer->self_attn->k_proj->bias);
      out->self_attn->v_proj->bias.copy_(layer->self_attn->v_proj->bias);
    }
    if (c.qk_norm) {
      out->self_attn->q_norm->weight.copy_(layer->self_attn->q_norm->weight);
      out->self_attn->k_norm->weight.copy_(layer->self_attn->k_norm->weight);
    }
    out->self_attn->o_proj->weight.copy_(
        torch::matmul(q_mid.t(), layer->self_attn->o_proj->weight));
    out->attn_shortcut_Q.copy_(torch::matmul(q_in.t(), q_mid));
    const Tensor h = torch::matmul(h_full, q_mid);
    // The MLP, in the original basis, reading the sliced stream.
    const Tensor mlp = batched([&](int64_t b, int64_t size) {
      const Tensor hn = torch::matmul(Normalize(h.narrow(0, b, size), d, eps), q_mid.t());
      return layer->mlp->forward(hn);
    });
    const Tensor x_full = torch::matmul(h, q_mid.t()) + mlp;
    const Tensor q_out = Principal(x_full, d, eps, width, &energy).narrow(1, 0, width);
    local.kept_energy.push_back(energy);
    out->mlp->gate_proj->weight.copy_(torch::matmul(layer->mlp->gate_proj->weight, q_mid));
    out->mlp->up_proj->weight.copy_(torch::matmul(layer->mlp->up_proj->weight, q_mid));
    out->mlp->down_proj->weight.copy_(torch::matmul(q_out.t(), layer->mlp->down_proj->weight));
    out->mlp_shortcut_Q.copy_(torch::matmul(q_mid.t(), q_out));
    x = torch::matmul(x_full, q_out);
    q_in = q_out;
  }
  if (tied) {
    sliced->head_Q.copy_(q_in.t());
    sliced->output_scale.copy_(folded->model->norm->weight);
  } else {
    sliced->lm_head->weight.copy_(torch::matmul(folded->lm_head->weight, q_in));
  }
  sliced->to(torch::kFloat32);
  sliced->eval();
  model.train(was_training);
  if (report != nullptr) *report = std::move(local);
  return sliced;
}

}  // namespace retort::student
