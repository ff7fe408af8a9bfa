#include "student/quantize.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace retort::student {
namespace {

int64_t Float32Bytes(const torch::Tensor& t) { return t.numel() * 4; }

// Quantizes a weight viewed as [rows, cols]; records it in `report`.
absl::StatusOr<models::BlockQuantized> QuantizeOne(const std::string& name, const torch::Tensor& w,
                                                   const QuantizeOptions& options,
                                                   QuantizeReport* report) {
  const torch::Tensor matrix = w.detach().reshape({w.size(0), -1});
  absl::StatusOr<models::BlockQuantized> q =
      models::QuantizeWithFallback(matrix, options.bits, options.group_size);
  if (!q.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", q.status().message()));
  }
  if (q->bits != options.bits ||
      q->block_size != (options.group_size == 0 ? matrix.size(1) : options.group_size)) {
    report->fallback_tensors += 1;
  }
  report->quantized_tensors += 1;
  report->quantized_elements += matrix.numel();
  report->quantized_bytes += q->StorageBytes(4);
  const double norm = matrix.norm().item<double>();
  if (norm > 0) {
    report->max_relative_error = std::max(report->max_relative_error,
                                          (matrix - q->Dequantize()).norm().item<double>() / norm);
  }
  return q;
}

}  // namespace

absl::StatusOr<QuantizeOptions> QuantizeOptions::Parse(const std::string& scheme,
                                                       int64_t group_size) {
  QuantizeOptions out;
  std::string base = scheme;
  int64_t group = group_size;
  if (const size_t dash = scheme.find("-g"); dash != std::string::npos) {
    base = scheme.substr(0, dash);
    if (!absl::SimpleAtoi(scheme.substr(dash + 2), &group) || group <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--quantize=", scheme, ": the group after -g must be a positive number"));
    }
  }
  if (base == "int8" || base == "q8") {
    out.bits = 8;
    out.group_size = group;
  } else if (base == "int4" || base == "q4") {
    out.bits = 4;
    out.group_size = group == 0 ? 64 : group;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--quantize=", scheme,
                     " is not a scheme; use int8 (per-channel), int8-g32, int4 "
                     "(groups of 64), int4-g32 or int4-g128"));
  }
  if (out.bits == 4 && out.group_size % 2 != 0) {
    return absl::InvalidArgumentError("4-bit groups must have an even size");
  }
  return out;
}

std::string QuantizeOptions::Describe() const {
  return absl::StrCat("int", bits,
                      group_size == 0 ? " per-channel" : absl::StrCat(" g", group_size));
}

absl::StatusOr<QuantizeReport> QuantizeLlama(const QuantizeOptions& options,
                                             models::CausalLm* model) {
  if (model->quantization.quantized()) {
    return absl::FailedPreconditionError(absl::StrCat("the model is already quantized (",
                                                      model->quantization.Describe(),
                                                      "); quantize the float checkpoint instead"));
  }
  QuantizeReport report;
  torch::NoGradGuard no_grad;
  for (const auto& p : model->parameters()) report.float_bytes += Float32Bytes(p);
  // Quantize everything first, so a group size that does not fit one tensor
  // leaves the model untouched.
  std::vector<std::pair<models::Projection, models::BlockQuantized>> planned;
  for (auto& [name, projection] : model->Projections()) {
    RETORT_ASSIGN_OR_RETURN(models::BlockQuantized q,
                            QuantizeOne(name + ".weight", projection->weight, options, &report));
    planned.emplace_back(projection, std::move(q));
  }
  torch::Tensor embeddings;
  if (options.embeddings) {
    RETORT_ASSIGN_OR_RETURN(
        models::BlockQuantized q,
        QuantizeOne("model.embed_tokens.weight", model->EmbeddingWeight(), options, &report));
    embeddings = q.Dequantize();
  }
  for (auto& [projection, q] : planned) projection->SetQuantized(std::move(q));
  const torch::Tensor embedding = model->EmbeddingWeight();
  if (embeddings.defined()) embedding.copy_(embeddings);
  for (const auto& p : model->named_parameters()) {
    const bool quantized =
        p.value().numel() == 0 || (options.embeddings && p.value().is_same(embedding));
    if (!quantized) report.quantized_bytes += Float32Bytes(p.value());
  }
  model->quantization.bits = options.bits;
  model->quantization.group_size = options.group_size;
  model->quantization.embeddings = options.embeddings;
  return report;
}

std::shared_ptr<models::LlamaModel> DequantizeLlama(models::LlamaModel& model) {
  auto out = std::make_shared<models::LlamaModel>(model.config());
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> weights;
  for (const auto& p : model.named_parameters()) weights[p.key()] = p.value();
  for (auto& [name, projection] : model.Projections()) {
    weights[name + ".weight"] = projection->EffectiveWeight();
  }
  for (auto& p : out->named_parameters()) p.value().copy_(weights.at(p.key()));
  out->eval();
  return out;
}

absl::StatusOr<QuantizeReport> QuantizeClassifier(const QuantizeOptions& options,
                                                  models::Classifier* model) {
  QuantizeReport report;
  torch::NoGradGuard no_grad;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> planned;
  for (const auto& p : model->named_parameters()) {
    report.float_bytes += Float32Bytes(p.value());
    // Linear [out, in] and Conv2d [out, in, kh, kw] weights, one row per
    // output channel; biases stay float.
    if (p.value().dim() < 2 || !absl::EndsWith(p.key(), "weight")) {
      report.quantized_bytes += Float32Bytes(p.value());
      continue;
    }
    RETORT_ASSIGN_OR_RETURN(models::BlockQuantized q,
                            QuantizeOne(p.key(), p.value(), options, &report));
    planned.emplace_back(p.value(), q.Dequantize().view(p.value().sizes()));
  }
  for (auto& [param, value] : planned) param.copy_(value);
  return report;
}

}  // namespace retort::student
