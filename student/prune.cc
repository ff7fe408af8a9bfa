#include "student/prune.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace retort::student {
namespace {

absl::Status CheckFraction(const char* what, double value) {
  if (!(value >= 0.0 && value < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be in [0, 1), got ", value));
  }
  return absl::OkStatus();
}

// The input-column norms of `name`, or an error saying calibration is needed.
absl::StatusOr<torch::Tensor> NormsOf(const InputNorms* norms, const std::string& name,
                                      int64_t columns) {
  if (norms == nullptr) {
    return absl::InvalidArgumentError(
        "activation-aware scores need calibration data (--data, or --method=magnitude)");
  }
  auto it = norms->find(name);
  if (it == norms->end() || it->second.numel() != columns) {
    return absl::InternalError(absl::StrCat("no calibration statistics for ", name));
  }
  return it->second.to(torch::kFloat32);
}

// Zeroes the `sparsity` share of `w` ([out, in...]) with the lowest scores;
// per row when `per_row`. Returns how many entries are zero afterwards.
int64_t ZeroLowest(torch::Tensor& w, const torch::Tensor& scores, double sparsity, bool per_row) {
  torch::NoGradGuard no_grad;
  const torch::Tensor s = scores.reshape({w.size(0), -1});
  const int64_t cols = s.size(1);
  torch::Tensor mask;
  if (per_row) {
    const int64_t k = static_cast<int64_t>(std::floor(sparsity * static_cast<double>(cols)));
    mask = torch::ones_like(s, torch::kBool);
    if (k > 0) {
      const torch::Tensor lowest = std::get<1>(s.topk(k, 1, /*largest=*/false));
      mask.scatter_(1, lowest, false);
    }
  } else {
    const int64_t k = static_cast<int64_t>(std::floor(sparsity * static_cast<double>(s.numel())));
    mask = torch::ones({s.numel()}, torch::kBool);
    if (k > 0) {
      const torch::Tensor lowest = std::get<1>(s.flatten().topk(k, 0, /*largest=*/false));
      mask.index_fill_(0, lowest, false);
    }
    mask = mask.view(s.sizes());
  }
  w.mul_(mask.view(w.sizes()).to(w.scalar_type()));
  return (w == 0).sum().item<int64_t>();
}

int64_t KeepCount(int64_t n, double fraction, int64_t multiple_of) {
  const double keep = static_cast<double>(n) * (1.0 - fraction);
  int64_t k = std::max<int64_t>(1, static_cast<int64_t>(std::llround(keep)));
  if (multiple_of > 1) {
    k = std::max(multiple_of, (k + multiple_of / 2) / multiple_of * multiple_of);
  }
  return std::min(k, n);
}

// The indices of the `keep` highest scores, in ascending index order.
torch::Tensor TopIndices(const torch::Tensor& scores, int64_t keep) {
  return std::get<0>(std::get<1>(scores.topk(keep)).sort());
}

int64_t CountParameters(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// A structurally pruned model, finished: in eval mode, with both models'
// parameter counts in `report` (when given).
template <typename Model>
std::shared_ptr<Model> Finished(torch::nn::Module& source, std::shared_ptr<Model> pruned,
                                PruneReport* report) {
  pruned->eval();
  if (report != nullptr) {
    report->parameters_before = CountParameters(source);
    report->parameters_after = CountParameters(*pruned);
  }
  return pruned;
}

}  // namespace

absl::StatusOr<PruneScore> ParsePruneScore(const std::string& name) {
  if (name == "magnitude") return PruneScore::kMagnitude;
  if (name == "activation") return PruneScore::kActivation;
  return absl::InvalidArgumentError(absl::StrCat(
      "--method=", name, ": use magnitude (|W|) or activation (|W| times input norms, Wanda)"));
}

absl::StatusOr<InputNorms> CollectLlamaInputNorms(models::CausalLm& model,
                                                  const data::Dataset& dataset, int64_t sequences,
                                                  int64_t batch_size) {
  if (dataset.size() == 0) return absl::InvalidArgumentError("the calibration data is empty");
  const int64_t n = sequences <= 0 ? dataset.size() : std::min(sequences, dataset.size());
  auto projections = model.Projections();
  for (auto& [name, p] : projections) p->StartInputStats();
  const bool was_training = model.is_training();
  model.eval();
  {
    torch::NoGradGuard no_grad;
    for (int64_t begin = 0; begin < n; begin += batch_size) {
      std::vector<int64_t> indices(static_cast<size_t>(std::min(batch_size, n - begin)));
      std::iota(indices.begin(), indices.end(), begin);
      model.forward(dataset.GetBatch(indices).inputs);
    }
  }
  model.train(was_training);
  InputNorms out;
  for (auto& [name, p] : projections) out[name + ".weight"] = p->StopInputStats().sqrt();
  return out;
}

absl::StatusOr<InputNorms> CollectClassifierInputNorms(models::Classifier& model,
                                                       const data::Dataset& dataset,
                                                       int64_t examples) {
  if (dataset.size() == 0) return absl::InvalidArgumentError("the calibration data is empty");
  const int64_t n = examples <= 0 ? dataset.size() : std::min(examples, dataset.size());
  const bool cnn = model.spec().architecture == models::Architecture::kCnn;
  // The weights whose inputs are recorded, and the hidden layer feeding each
  // (empty: the image).
  std::vector<std::pair<std::string, std::string>> weights;
  if (cnn) {
    weights = {{"conv1.weight", ""},
               {"conv2.weight", "conv1"},
               {"fc.weight", "conv2"},
               {"classifier.weight", "fc"}};
  } else {
    const size_t layers = model.spec().hidden.size();
    for (size_t i = 0; i <= layers; ++i) {
      weights.emplace_back(absl::StrCat("fc", i, ".weight"),
                           i == 0 ? "" : absl::StrCat("fc", i - 1));
    }
  }
  std::vector<std::string> names;
  for (const auto& [weight, layer] : weights) {
    if (!layer.empty()) names.push_back(layer);
  }
  std::vector<torch::Tensor> sums(weights.size());
  const bool was_training = model.is_training();
  model.eval();
  {
    torch::NoGradGuard no_grad;
    for (int64_t begin = 0; begin < n; begin += 1000) {
      std::vector<int64_t> indices(static_cast<size_t>(std::min<int64_t>(1000, n - begin)));
      std::iota(indices.begin(), indices.end(), begin);
      const torch::Tensor x = dataset.GetBatch(indices).inputs;
      models::HiddenStates hidden;
      model.ForwardWithHidden(x, names, &hidden);
      for (size_t i = 0; i < weights.size(); ++i) {
        const std::string& layer = weights[i].second;
        const torch::Tensor in = layer.empty() ? x : hidden[layer];
        torch::Tensor sq = in.to(torch::kFloat64).pow(2);
        // A convolution reads channels (summed over positions); a linear
        // layer reads the flattened columns.
        const bool conv_input = cnn && i < 2;
        const torch::Tensor s =
            conv_input ? sq.sum(std::vector<int64_t>{0, 2, 3}) : sq.flatten(1).sum(0);
        sums[i] = sums[i].defined() ? sums[i] + s : s;
      }
    }
  }
  model.train(was_training);
  InputNorms out;
  for (size_t i = 0; i < weights.size(); ++i) out[weights[i].first] = sums[i].sqrt();
  return out;
}

absl::StatusOr<PruneReport> PruneLlamaUnstructured(double sparsity, PruneScore score,
                                                   const InputNorms* norms,
                                                   models::CausalLm* model) {
  RETORT_RETURN_IF_ERROR(CheckFraction("--sparsity", sparsity));
  if (model->quantization.quantized()) {
    return absl::FailedPreconditionError("prune the float model, then quantize");
  }
  PruneReport report;
  report.parameters_before = report.parameters_after = CountParameters(*model);
  for (auto& [name, p] : model->Projections()) {
    if (name == "lm_head") continue;  // the output head is kept, as the embeddings
    torch::Tensor& w = p->weight;
    torch::Tensor scores = w.detach().abs();
    if (score == PruneScore::kActivation) {
      RETORT_ASSIGN_OR_RETURN(torch::Tensor n, NormsOf(norms, name + ".weight", w.size(1)));
      scores = scores * n.unsqueeze(0);
    }
    report.weights += w.numel();
    report.zeroed += ZeroLowest(w, scores, sparsity, score == PruneScore::kActivation);
  }
  return report;
}

absl::StatusOr<PruneReport> PruneClassifierUnstructured(double sparsity, PruneScore score,
                                                        const InputNorms* norms,
                                                        models::Classifier* model) {
  RETORT_RETURN_IF_ERROR(CheckFraction("--sparsity", sparsity));
  PruneReport report;
  report.parameters_before = report.parameters_after = CountParameters(*model);
  for (auto& p : model->named_parameters()) {
    torch::Tensor& w = p.value();
    if (w.dim() < 2 || !absl::EndsWith(p.key(), "weight")) continue;
    torch::Tensor scores = w.detach().abs();
    if (score == PruneScore::kActivation) {
      RETORT_ASSIGN_OR_RETURN(torch::Tensor n, NormsOf(norms, p.key(), w.size(1)));
      // [1, in] for a matrix, [1, in, 1, 1] for a convolution's filters.
      std::vector<int64_t> shape(static_cast<size_t>(w.dim()), 1);
      shape[1] = w.size(1);
      scores = scores * n.view(shape);
    }
    report.weights += w.numel();
    report.zeroed += ZeroLowest(w, scores, sparsity, score == PruneScore::kActivation);
  }
  return report;
}

absl::StatusOr<std::shared_ptr<models::LlamaModel>> PruneLlamaMlpNeurons(
    models::LlamaModel& model, double fraction, PruneScore score, const InputNorms* norms,
    int64_t multiple_of, PruneReport* report) {
  RETORT_RETURN_IF_ERROR(CheckFraction("--fraction", fraction));
  if (model.quantization.quantized()) {
    return absl::FailedPreconditionError("prune the float model, then quantize");
  }
  models::LlamaConfig config = model.config();
  const int64_t keep = KeepCount(config.intermediate_size, fraction, multiple_of);
  config.intermediate_size = keep;
  torch::NoGradGuard no_grad;
  auto out = std::make_shared<models::LlamaModel>(config);
  auto source = model.named_parameters();
  auto target = out->named_parameters();
  for (const auto& p : target) {
    // Everything but the MLP matrices is copied as is.
    if (p.key().find(".mlp.") == std::string::npos) p.value().copy_(source[p.key()]);
  }
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    auto* from = model.model->layers[static_cast<size_t>(i)]->as<models::LlamaDecoderLayer>();
    auto* to = out->model->layers[static_cast<size_t>(i)]->as<models::LlamaDecoderLayer>();
    const torch::Tensor gate = from->mlp->gate_proj->weight, up = from->mlp->up_proj->weight,
                        down = from->mlp->down_proj->weight;
    torch::Tensor scores = down.norm(2, {0}).to(torch::kFloat64);
    if (score == PruneScore::kActivation) {
      const std::string name = absl::StrCat("model.layers.", i, ".mlp.down_proj.weight");
      RETORT_ASSIGN_OR_RETURN(torch::Tensor n, NormsOf(norms, name, down.size(1)));
      scores = scores * n.to(torch::kFloat64);
    } else {
      scores = scores * gate.norm(2, {1}).to(torch::kFloat64) * up.norm(2, {1}).to(torch::kFloat64);
    }
    const torch::Tensor kept = TopIndices(scores, keep);
    to->mlp->gate_proj->weight.copy_(gate.index_select(0, kept));
    to->mlp->up_proj->weight.copy_(up.index_select(0, kept));
    to->mlp->down_proj->weight.copy_(down.index_select(1, kept));
  }
  return Finished(model, std::move(out), report);
}

absl::StatusOr<std::shared_ptr<models::LlamaModel>> PruneLlamaAttentionHeads(
    models::LlamaModel& model, double fraction, PruneScore score, const InputNorms* norms,
    PruneReport* report) {
  RETORT_RETURN_IF_ERROR(CheckFraction("--heads_fraction", fraction));
  if (model.quantization.quantized()) {
    return absl::FailedPreconditionError("prune the float model, then quantize");
  }
  models::LlamaConfig config = model.config();
  const int64_t hd = config.head_dim();
  const int64_t groups = config.num_key_value_heads;
  const int64_t per_group = config.num_attention_heads / groups;  // query heads per group
  const int64_t keep = KeepCount(groups, fraction, /*multiple_of=*/1);
  config.attention_head_dim = hd;
  config.num_key_value_heads = keep;
  config.num_attention_heads = keep * per_group;
  torch::NoGradGuard no_grad;
  auto out = std::make_shared<models::LlamaModel>(config);
  auto source = model.named_parameters();
  for (auto& p : out->named_parameters()) {
    // Everything but the attention matrices is copied as is.
    if (p.key().find(".self_attn.") == std::string::npos) p.value().copy_(source[p.key()]);
  }
  // Rows (or columns) [g * width, (g + 1) * width) for each group g of `kept`.
  auto spans = [](const torch::Tensor& kept, int64_t width) {
    const torch::Tensor offsets = torch::arange(width, torch::kInt64);
    return (kept.unsqueeze(1) * width + offsets.unsqueeze(0)).flatten();
  };
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    auto* from = model.model->layers[static_cast<size_t>(i)]->as<models::LlamaDecoderLayer>();
    auto* to = out->model->layers[static_cast<size_t>(i)]->as<models::LlamaDecoderLayer>();
    const torch::Tensor q = from->self_attn->q_proj->weight, k = from->self_attn->k_proj->weight,
                        v = from->self_attn->v_proj->weight, o = from->self_attn->o_proj->weight;
    torch::Tensor column = o.norm(2, {0}).to(torch::kFloat64);  // [heads * hd]
    torch::Tensor scores;
    if (score == PruneScore::kActivation) {
      const std::string name = absl::StrCat("model.layers.", i, ".self_attn.o_proj.weight");
      RETORT_ASSIGN_OR_RETURN(torch::Tensor n, NormsOf(norms, name, o.size(1)));
      scores = (column * n.to(torch::kFloat64)).pow(2).view({groups, -1}).sum(1).sqrt();
    } else {
      scores = column.pow(2).view({groups, -1}).sum(1).sqrt() *
               v.to(torch::kFloat64).pow(2).view({groups, -1}).sum(1).sqrt();
    }
    const torch::Tensor kept = TopIndices(scores, keep);
    const torch::Tensor query_rows = spans(kept, per_group * hd), kv_rows = spans(kept, hd);
    to->self_attn->q_proj->weight.copy_(q.index_select(0, query_rows));
    to->self_attn->k_proj->weight.copy_(k.index_select(0, kv_rows));
    to->self_attn->v_proj->weight.copy_(v.index_select(0, kv_rows));
    to->self_attn->o_proj->weight.copy_(o.index_select(1, query_rows));
    if (config.qkv_bias) {  // Qwen2: each kept row keeps its bias
      to->self_attn->q_proj->bias.copy_(from->self_attn->q_proj->bias.index_select(0, query_rows));
      to->self_attn->k_proj->bias.copy_(from->self_attn->k_proj->bias.index_select(0, kv_rows));
      to->self_attn->v_proj->bias.copy_(from->self_attn->v_proj->bias.index_select(0, kv_rows));
    }
    if (config.qk_norm) {  // Qwen3: one scale over head_dim, shared by every head
      to->self_attn->q_norm->weight.copy_(from->self_attn->q_norm->weight);
      to->self_attn->k_norm->weight.copy_(from->self_attn->k_norm->weight);
    }
  }
  return Finished(model, std::move(out), report);
}

namespace {

// Structured pruning of a CNN: conv1 and conv2 channels, fc units.
absl::StatusOr<std::shared_ptr<models::Classifier>> PruneCnnChannels(
    models::Classifier& model, double fraction, PruneScore score, const InputNorms* norms,
    int64_t multiple_of, PruneReport* report) {
  models::ModelSpec spec = model.spec();
  torch::NoGradGuard no_grad;
  auto params = model.named_parameters();
  const int64_t positions = (spec.input_shape[1] / 4) * (spec.input_shape[2] / 4);
  // Layer l's units and the weight that reads them: conv1 -> conv2 (input
  // channels), conv2 -> fc (each channel a run of `positions` columns),
  // fc -> classifier.
  const std::vector<std::string> layer = {"conv1", "conv2", "fc"};
  const std::vector<std::string> next = {"conv2", "fc", "classifier"};
  std::vector<torch::Tensor> kept(3);
  for (size_t l = 0; l < 3; ++l) {
    const torch::Tensor w = params[layer[l] + ".weight"];
    const torch::Tensor reader = params[next[l] + ".weight"];
    const int64_t units = spec.hidden[l];
    // Per unit: the norm of the reader's weights on it, [units].
    torch::Tensor read = reader.to(torch::kFloat64).pow(2);
    read = l == 1 ? read.view({reader.size(0), units, positions}).sum(std::vector<int64_t>{0, 2})
                  : read.transpose(0, 1).reshape({units, -1}).sum(1);
    torch::Tensor scores = read.sqrt();
    if (score == PruneScore::kActivation) {
      const std::string name = next[l] + ".weight";
      RETORT_ASSIGN_OR_RETURN(torch::Tensor n,
                              NormsOf(norms, name, l == 1 ? units * positions : units));
      torch::Tensor h = n.to(torch::kFloat64);
      if (l == 1) h = h.pow(2).view({units, positions}).sum(1).sqrt();
      scores = scores * h;
    } else {
      scores = scores * w.to(torch::kFloat64).pow(2).reshape({units, -1}).sum(1).sqrt();
    }
    const int64_t keep = KeepCount(units, fraction, multiple_of);
    kept[l] = TopIndices(scores, keep);
    spec.hidden[l] = keep;
  }
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<models::Classifier> pruned,
                          models::CreateClassifier(spec));
  auto target = pruned->named_parameters();
  auto copy = [&](const std::string& name, torch::Tensor value) { target[name].copy_(value); };
  copy("conv1.weight", params["conv1.weight"].index_select(0, kept[0]));
  copy("conv1.bias", params["conv1.bias"].index_select(0, kept[0]));
  copy("conv2.weight", params["conv2.weight"].index_select(0, kept[1]).index_select(1, kept[0]));
  copy("conv2.bias", params["conv2.bias"].index_select(0, kept[1]));
  const torch::Tensor fc = params["fc.weight"].index_select(0, kept[2]);
  copy("fc.weight", fc.view({fc.size(0), model.spec().hidden[1], positions})
                        .index_select(1, kept[1])
                        .reshape({fc.size(0), -1}));
  copy("fc.bias", params["fc.bias"].index_select(0, kept[2]));
  copy("classifier.weight", params["classifier.weight"].index_select(1, kept[2]));
  copy("classifier.bias", params["classifier.bias"]);
  return Finished(model, std::move(pruned), report);
}

}  // namespace

absl::StatusOr<std::shared_ptr<models::Classifier>> PruneClassifierNeurons(
    models::Classifier& model, double fraction, PruneScore score, const InputNorms* norms,
    int64_t multiple_of, PruneReport* report) {
  RETORT_RETURN_IF_ERROR(CheckFraction("--fraction", fraction));
  models::ModelSpec spec = model.spec();
  if (spec.architecture == models::Architecture::kCnn) {
    return PruneCnnChannels(model, fraction, score, norms, multiple_of, report);
  }
  torch::NoGradGuard no_grad;
  auto params = model.named_parameters();
  const size_t layers = spec.hidden.size();
  std::vector<torch::Tensor> kept(layers);
  for (size_t i = 0; i < layers; ++i) {
    const torch::Tensor in = params[absl::StrCat("fc", i, ".weight")];
    const torch::Tensor out = params[absl::StrCat("fc", i + 1, ".weight")];
    torch::Tensor scores = out.norm(2, {0}).to(torch::kFloat64);
    if (score == PruneScore::kActivation) {
      RETORT_ASSIGN_OR_RETURN(torch::Tensor n,
                              NormsOf(norms, absl::StrCat("fc", i + 1, ".weight"), out.size(1)));
      scores = scores * n.to(torch::kFloat64);
    } else {
      scores = scores * in.norm(2, {1}).to(torch::kFloat64);
    }
    const int64_t keep = KeepCount(spec.hidden[i], fraction, multiple_of);
    kept[i] = TopIndices(scores, keep);
    spec.hidden[i] = keep;
  }
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<models::Classifier> pruned,
                          models::CreateClassifier(spec));
  auto target = pruned->named_parameters();
  for (size_t i = 0; i <= layers; ++i) {
    torch::Tensor w = params[absl::StrCat("fc", i, ".weight")];
    torch::Tensor b = params[absl::StrCat("fc", i, ".bias")];
    if (i < layers) {
      w = w.index_select(0, kept[i]);
      b = b.index_select(0, kept[i]);
    }
    if (i > 0) w = w.index_select(1, kept[i - 1]);
    target[absl::StrCat("fc", i, ".weight")].copy_(w);
    target[absl::StrCat("fc", i, ".bias")].copy_(b);
  }
  return Finished(model, std::move(pruned), report);
}

}  // namespace retort::student
