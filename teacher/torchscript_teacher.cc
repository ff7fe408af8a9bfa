#include "teacher/torchscript_teacher.h"

#include <map>

#include <torch/script.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "models/checkpoint_file.h"

namespace retort::teacher {

struct TorchScriptTeacher::Module {
  torch::jit::Module module;
};

namespace {

// Splits a forward result into logits and named hidden states.
absl::StatusOr<TeacherOutput> Unpack(const torch::jit::IValue& result, const std::string& path) {
  TeacherOutput out;
  if (result.isTensor()) {
    out.logits = result.toTensor();
  } else if (result.isTuple() && result.toTupleRef().elements().size() == 2 &&
             result.toTupleRef().elements()[0].isTensor() &&
             result.toTupleRef().elements()[1].isGenericDict()) {
    const auto& elements = result.toTupleRef().elements();
    out.logits = elements[0].toTensor();
    for (const auto& entry : elements[1].toGenericDict()) {
      if (!entry.key().isString() || !entry.value().isTensor()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": the hidden-state dict must map str to Tensor"));
      }
      out.hidden[entry.key().toStringRef()] = entry.value().toTensor();
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": forward must return logits or (logits, Dict[str, Tensor]), got ",
                     result.tagKind()));
  }
  if (out.logits.dim() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": forward returned logits of shape [",
                                                   absl::StrJoin(out.logits.sizes(), ","),
                                                   "], expected [batch, classes]"));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TorchScriptTeacher>> TorchScriptTeacher::Create(
    const Options& options) {
  auto module = std::make_unique<Module>();
  RETORT_RETURN_IF_ERROR(TorchCall(absl::StrCat("loading TorchScript module ", options.path), [&] {
    module->module = torch::jit::load(options.path);
    module->module.eval();
    if (options.bf16) module->module.to(torch::kBFloat16);
  }));
  std::unique_ptr<TorchScriptTeacher> teacher(new TorchScriptTeacher(options, std::move(module)));
  // Warm-up: two rows of zeros find the output width and hidden layers.
  std::vector<int64_t> shape = {2};
  shape.insert(shape.end(), options.input_shape.begin(), options.input_shape.end());
  absl::StatusOr<torch::jit::IValue> result = TorchCall(
      absl::StrCat(options.path, ": warm-up forward on inputs [", absl::StrJoin(shape, ","), "]"),
      [&] {
        torch::InferenceMode guard;
        torch::Tensor x = torch::zeros(shape);
        if (options.bf16) x = x.to(torch::kBFloat16);
        return teacher->module_->module.forward({x});
      });
  if (!result.ok()) return result.status();
  RETORT_ASSIGN_OR_RETURN(TeacherOutput out, Unpack(*result, options.path));
  if (out.logits.size(0) != 2 || out.logits.size(1) < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.path, ": forward on 2 rows returned logits [",
                     absl::StrJoin(out.logits.sizes(), ","), "], expected [2, classes >= 2]"));
  }
  v1::TeacherFingerprint& fp = teacher->fingerprint_;
  fp.set_num_classes(out.logits.size(1));
  for (const auto& [name, h] : out.hidden) {
    v1::HiddenLayerInfo* info = fp.add_hidden_layers();
    info->set_name(name);
    for (int64_t i = 1; i < h.dim(); ++i) info->add_shape(h.size(i));
  }
  fp.set_architecture(
      absl::StrCat("torchscript ", teacher->module_->module.type()->name()->qualifiedName(), " ",
                   absl::StrJoin(options.input_shape, "x"), "->", out.logits.size(1)));
  return teacher;
}

TorchScriptTeacher::TorchScriptTeacher(Options options, std::unique_ptr<Module> module)
    : options_(std::move(options)), module_(std::move(module)) {
  std::map<std::string, torch::Tensor> named;
  for (const auto& p : module_->module.named_parameters()) named[p.name] = p.value;
  for (const auto& b : module_->module.named_buffers()) named[b.name] = b.value;
  fingerprint_.set_weights_sha256(models::NamedTensorsSha256(named));
  for (int64_t d : options_.input_shape) fingerprint_.add_input_shape(d);
  fingerprint_.set_input_dtype(v1::DTYPE_FLOAT32);
}

TorchScriptTeacher::~TorchScriptTeacher() = default;

absl::StatusOr<TeacherOutput> TorchScriptTeacher::Forward(
    const torch::Tensor& inputs, const std::vector<std::string>& hidden_layers) {
  absl::StatusOr<torch::jit::IValue> result = TorchCall("teacher forward", [&] {
    torch::InferenceMode guard;
    torch::Tensor x = options_.bf16 ? inputs.to(torch::kBFloat16) : inputs;
    return module_->module.forward({x});
  });
  if (!result.ok()) return result.status();
  RETORT_ASSIGN_OR_RETURN(TeacherOutput out, Unpack(*result, options_.path));
  TeacherOutput kept;
  kept.logits = out.logits.to(torch::kFloat32);
  for (const std::string& name : hidden_layers) {
    auto it = out.hidden.find(name);
    if (it == out.hidden.end()) {
      return absl::InternalError(absl::StrCat("the module did not return hidden layer ", name));
    }
    kept.hidden[name] = it->second.to(torch::kFloat32);
  }
  return kept;
}

}  // namespace retort::teacher
