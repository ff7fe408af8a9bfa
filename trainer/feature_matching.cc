#include "trainer/feature_matching.h"

#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace retort::trainer {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// "s0=fc0 [128], s1=fc1 [64]"
std::string ListLayers(const std::vector<models::HiddenLayer>& layers, char prefix) {
  if (layers.empty()) return "none";
  std::vector<std::string> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    out.push_back(absl::StrCat(std::string(1, prefix), i, "=", layers[i].name, " ",
                               ShapeString(layers[i].shape)));
  }
  return absl::StrJoin(out, ", ");
}

// Resolves "s<i>" / "t<j>" or a layer name to an index into `layers`.
absl::StatusOr<size_t> FindLayer(absl::string_view token,
                                 const std::vector<models::HiddenLayer>& layers, char prefix,
                                 absl::string_view side) {
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].name == token) return i;
  }
  absl::string_view digits = token;
  int64_t index = -1;
  if (absl::ConsumePrefix(&digits, std::string(1, prefix)) && !digits.empty() &&
      absl::SimpleAtoi(digits, &index) && index >= 0 &&
      static_cast<size_t>(index) < layers.size()) {
    return static_cast<size_t>(index);
  }
  return absl::InvalidArgumentError(absl::StrCat("--match: the ", side, " has no layer '", token,
                                                 "'; its hidden layers are ",
                                                 ListLayers(layers, prefix)));
}

bool IsIntermediate(const models::HiddenLayer& layer) {
  return layer.name != "embed" && layer.name != "final_norm";
}

}  // namespace

absl::Status FeatureMatchOptions::Validate() const {
  if (!(weight >= 0) || !std::isfinite(weight)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--feature_weight must be >= 0 (0 turns feature matching off), got ", weight));
  }
  if (!enabled() && !match.empty()) {
    return absl::InvalidArgumentError(
        "--match is set but --feature_weight is 0; set --feature_weight > 0 to match features");
  }
  return absl::OkStatus();
}

nlohmann::json FeatureMatchOptions::ToJson() const {
  // The mapping itself is recorded resolved (SetUpFeatureMatching's pairs),
  // so equivalent --match spellings resume each other's runs.
  return {{"weight", weight},
          {"loss", loss == FeatureLoss::kMse ? "mse" : "cosine"},
          {"adapter", nonlinear ? "mlp" : "linear"}};
}

absl::StatusOr<FeatureLoss> FeatureMatchOptions::ParseLoss(const std::string& name) {
  if (name == "mse") return FeatureLoss::kMse;
  if (name == "cosine") return FeatureLoss::kCosine;
  return absl::InvalidArgumentError(
      absl::StrCat("--feature_loss must be mse or cosine, got '", name, "'"));
}

absl::StatusOr<bool> FeatureMatchOptions::ParseAdapter(const std::string& name) {
  if (name == "linear") return false;
  if (name == "mlp") return true;
  return absl::InvalidArgumentError(
      absl::StrCat("--adapter must be linear or mlp (Linear-GELU-Linear), got '", name, "'"));
}

nlohmann::json LayerPair::ToJson() const {
  return {{"student", student},
          {"teacher", teacher},
          {"weight", weight},
          {"student_shape", student_shape},
          {"teacher_shape", teacher_shape}};
}

std::vector<models::HiddenLayer> TeacherHiddenLayers(const v1::TeacherFingerprint& fingerprint) {
  std::vector<models::HiddenLayer> layers;
  for (const v1::HiddenLayerInfo& info : fingerprint.hidden_layers()) {
    layers.push_back({info.name(), {info.shape().begin(), info.shape().end()}});
  }
  return layers;
}

absl::StatusOr<std::vector<LayerPair>> ResolveLayerMapping(
    const std::string& match, const std::vector<models::HiddenLayer>& student,
    const std::vector<models::HiddenLayer>& teacher) {
  if (teacher.empty()) {
    return absl::InvalidArgumentError(
        "feature matching needs a teacher that exposes hidden layers, and this one exposes none "
        "(a TorchScript teacher without hidden-layer metadata?); set --feature_weight=0");
  }
  std::vector<LayerPair> pairs;
  auto add = [&](size_t s, size_t t, double weight) {
    pairs.push_back({.student = student[s].name,
                     .teacher = teacher[t].name,
                     .weight = weight,
                     .student_shape = student[s].shape,
                     .teacher_shape = teacher[t].shape});
  };
  if (match.empty()) {
    std::vector<size_t> s_candidates, t_candidates;
    for (size_t i = 0; i < student.size(); ++i) {
      if (IsIntermediate(student[i])) s_candidates.push_back(i);
    }
    for (size_t i = 0; i < teacher.size(); ++i) {
      if (IsIntermediate(teacher[i])) t_candidates.push_back(i);
    }
    if (s_candidates.empty() || t_candidates.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "no intermediate layers to pair by default (student: ", ListLayers(student, 's'),
          "; teacher: ", ListLayers(teacher, 't'), "); name the pairs with --match"));
    }
    const size_t n = s_candidates.size(), m = t_candidates.size();
    for (size_t i = 1; i <= n; ++i) {
      const size_t j = (i * m + n - 1) / n;  // ceil(i * m / n), in [1, m]
      add(s_candidates[i - 1], t_candidates[j - 1], 1.0);
    }
    return pairs;
  }
  std::set<std::pair<std::string, std::string>> seen;
  for (absl::string_view entry : absl::StrSplit(match, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    std::vector<absl::string_view> fields = absl::StrSplit(entry, ':');
    if (fields.size() != 2 && fields.size() != 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--match entry '", entry,
          "' is not STUDENT:TEACHER or STUDENT:TEACHER:WEIGHT (e.g. s1:t2,s2:t4:0.5)"));
    }
    absl::StatusOr<size_t> s = FindLayer(fields[0], student, 's', "student");
    if (!s.ok()) return s.status();
    absl::StatusOr<size_t> t = FindLayer(fields[1], teacher, 't', "teacher");
    if (!t.ok()) return t.status();
    double weight = 1.0;
    if (fields.size() == 3 &&
        (!absl::SimpleAtod(fields[2], &weight) || !std::isfinite(weight) || weight <= 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--match entry '", entry, "': the weight must be a positive number, got '",
                       fields[2], "'"));
    }
    if (!seen.insert({student[*s].name, teacher[*t].name}).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--match pairs ", student[*s].name, " with ", teacher[*t].name, " twice"));
    }
    add(*s, *t, weight);
  }
  return pairs;
}

FeatureAdapters::FeatureAdapters(std::vector<LayerPair> pairs, const FeatureMatchOptions& options)
    : pairs_(std::move(pairs)), loss_(options.loss) {
  for (const LayerPair& pair : pairs_) {
    torch::nn::Sequential adapter;
    const int64_t in = pair.student_shape[0];
    const int64_t out = pair.teacher_shape[0];
    if (pair.teacher_shape.size() == 3) {  // feature map onto feature map
      adapter->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1)));
      if (options.nonlinear) {
        adapter->push_back(torch::nn::GELU());
        adapter->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(out, out, 1)));
      }
    } else {
      adapter->push_back(torch::nn::Linear(in, out));
      if (options.nonlinear) {
        adapter->push_back(torch::nn::GELU());
        adapter->push_back(torch::nn::Linear(out, out));
      }
    }
    adapters_->push_back(adapter);
  }
  register_module("adapters", adapters_);
}

absl::StatusOr<std::shared_ptr<FeatureAdapters>> FeatureAdapters::Create(
    std::vector<LayerPair> pairs, const FeatureMatchOptions& options) {
  if (pairs.empty()) return absl::InvalidArgumentError("feature matching needs a layer pair");
  for (const LayerPair& pair : pairs) {
    const size_t s = pair.student_shape.size(), t = pair.teacher_shape.size();
    const bool ok = (s == 1 && t == 1) || (s == 3 && (t == 3 || t == 1));
    bool positive = true;
    for (int64_t d : pair.student_shape) positive = positive && d > 0;
    for (int64_t d : pair.teacher_shape) positive = positive && d > 0;
    if (!ok || !positive) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot map student layer ", pair.student, " ", ShapeString(pair.student_shape),
          " onto teacher layer ", pair.teacher, " ", ShapeString(pair.teacher_shape),
          ": adapters map vectors onto vectors and feature maps onto feature maps or vectors; "
          "choose another pair with --match"));
    }
  }
  return std::shared_ptr<FeatureAdapters>(new FeatureAdapters(std::move(pairs), options));
}

std::vector<std::string> FeatureAdapters::student_layers() const {
  std::set<std::string> names;
  for (const LayerPair& pair : pairs_) names.insert(pair.student);
  return {names.begin(), names.end()};
}

std::vector<std::string> FeatureAdapters::teacher_layers() const {
  std::set<std::string> names;
  for (const LayerPair& pair : pairs_) names.insert(pair.teacher);
  return {names.begin(), names.end()};
}

torch::Tensor FeatureAdapters::Adapt(size_t i, const torch::Tensor& student) {
  const LayerPair& pair = pairs_.at(i);
  auto adapter = adapters_[i]->as<torch::nn::Sequential>();
  torch::Tensor x = student;
  if (pair.student_shape.size() == 3) {
    TORCH_CHECK(x.dim() == 4, "student layer ", pair.student, " should be [N, C, H, W]");
    if (pair.teacher_shape.size() == 1) {
      x = x.mean({2, 3});  // global average pooling
    } else if (x.size(2) != pair.teacher_shape[1] || x.size(3) != pair.teacher_shape[2]) {
      x = torch::adaptive_avg_pool2d(x, {pair.teacher_shape[1], pair.teacher_shape[2]});
    }
  }
  return adapter->forward(x);
}

FeatureAdapters::Terms FeatureAdapters::Loss(const models::HiddenStates& student,
                                             const std::map<std::string, torch::Tensor>& teacher,
                                             const torch::Tensor& keep) {
  torch::Tensor kept_rows;
  if (keep.defined()) kept_rows = keep.reshape({-1}).nonzero().squeeze(1);
  Terms terms;
  for (size_t i = 0; i < pairs_.size(); ++i) {
    const LayerPair& pair = pairs_[i];
    auto s = student.find(pair.student);
    auto t = teacher.find(pair.teacher);
    TORCH_CHECK(s != student.end(), "student activation ", pair.student, " was not recorded");
    TORCH_CHECK(t != teacher.end(), "the teacher's answer lacks hidden layer ", pair.teacher);
    torch::Tensor adapted = Adapt(i, s->second);
    torch::Tensor target = t->second;
    // In-process teachers answer in inference mode; autograd cannot save
    // such tensors, a copy made here it can.
    if (target.is_inference()) target = target.clone();
    target = target.to(adapted.scalar_type());
    if (pair.teacher_shape.size() == 1) {
      // Tokens of a sequence model arrive as [B, T, d] from the student and
      // [B*T, d] from the teacher: compare per position.
      adapted = adapted.reshape({-1, pair.teacher_shape[0]});
      target = target.reshape({-1, pair.teacher_shape[0]});
    }
    TORCH_CHECK(adapted.sizes() == target.sizes(), "feature pair ", pair.student, ":", pair.teacher,
                ": adapted student activation ", adapted.sizes(), " and teacher activation ",
                target.sizes(), " differ");
    if (kept_rows.defined()) {
      TORCH_CHECK(keep.numel() == adapted.size(0), "the feature mask covers ", keep.numel(),
                  " rows, the activations ", adapted.size(0));
      adapted = adapted.index_select(0, kept_rows);
      target = target.index_select(0, kept_rows);
    }
    torch::Tensor loss;
    if (loss_ == FeatureLoss::kMse) {
      loss = torch::mse_loss(adapted, target);
    } else {
      loss = 1.0 - torch::cosine_similarity(adapted.flatten(1), target.flatten(1), /*dim=*/1,
                                            /*eps=*/1e-8)
                       .mean();
    }
    terms.losses.push_back(loss);
    torch::Tensor weighted = loss * pair.weight;
    terms.total = terms.total.defined() ? terms.total + weighted : weighted;
  }
  return terms;
}

absl::StatusOr<FeatureMatchingSetup> SetUpFeatureMatching(
    const FeatureMatchOptions& options, const std::vector<models::HiddenLayer>& student,
    const v1::TeacherFingerprint& teacher, const OptimizerOptions& optimizer) {
  absl::StatusOr<std::vector<LayerPair>> pairs =
      ResolveLayerMapping(options.match, student, TeacherHiddenLayers(teacher));
  if (!pairs.ok()) return pairs.status();
  FeatureMatchingSetup setup;
  setup.pairs = nlohmann::json::array();
  for (const LayerPair& pair : *pairs) setup.pairs.push_back(pair.ToJson());
  absl::StatusOr<std::shared_ptr<FeatureAdapters>> adapters =
      FeatureAdapters::Create(*std::move(pairs), options);
  if (!adapters.ok()) return adapters.status();
  setup.adapters = *std::move(adapters);
  absl::StatusOr<std::unique_ptr<torch::optim::Optimizer>> made =
      CreateOptimizer(optimizer, setup.adapters->parameters());
  if (!made.ok()) return made.status();
  setup.optimizer = *std::move(made);
  return setup;
}

}  // namespace retort::trainer
