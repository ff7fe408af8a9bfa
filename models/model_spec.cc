#include "models/model_spec.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace retort::models {

absl::StatusOr<Architecture> ParseArchitecture(const std::string& name) {
  if (name == "mlp") return Architecture::kMlp;
  if (name == "cnn") return Architecture::kCnn;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown architecture '", name, "'; use mlp or cnn"));
}

std::string ArchitectureName(Architecture architecture) {
  return architecture == Architecture::kMlp ? "mlp" : "cnn";
}

absl::Status ModelSpec::Validate() const {
  if (input_shape.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("input shape must be [channels, height, width], got [",
                     absl::StrJoin(input_shape, ","), "]"));
  }
  for (int64_t d : input_shape) {
    if (d <= 0) return absl::InvalidArgumentError("input shape must be positive");
  }
  if (num_classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_classes must be at least 2, got ", num_classes));
  }
  for (int64_t w : hidden) {
    if (w <= 0 || w > (1 << 16)) {
      return absl::InvalidArgumentError(absl::StrCat("hidden widths must be in [1, 65536], got [",
                                                     absl::StrJoin(hidden, ","), "]"));
    }
  }
  if (architecture == Architecture::kCnn) {
    if (hidden.size() != 3) {
      return absl::InvalidArgumentError(
          absl::StrCat("a cnn takes three widths (conv1 channels, conv2 channels, fc width), got [",
                       absl::StrJoin(hidden, ","), "]"));
    }
    if (input_shape[1] % 4 != 0 || input_shape[2] % 4 != 0) {
      return absl::InvalidArgumentError(
          "a cnn needs input height and width divisible by 4 (two 2x2 poolings)");
    }
    if (input_dropout != 0.0) {
      return absl::InvalidArgumentError("input dropout applies to mlp models only");
    }
  }
  if (!(dropout >= 0.0 && dropout < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("dropout must be in [0, 1), got ", dropout));
  }
  if (!(input_dropout >= 0.0 && input_dropout < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("input dropout must be in [0, 1), got ", input_dropout));
  }
  return absl::OkStatus();
}

std::string ModelSpec::Describe() const {
  int64_t inputs = 1;
  for (int64_t d : input_shape) inputs *= d;
  std::string text;
  if (architecture == Architecture::kMlp) {
    text = absl::StrCat("mlp ", inputs);
    for (int64_t w : hidden) absl::StrAppend(&text, "-", w);
    absl::StrAppend(&text, "-", num_classes);
  } else {
    text =
        absl::StrCat("cnn conv", hidden[0], "-conv", hidden[1], "-fc", hidden[2], "-", num_classes);
  }
  if (dropout > 0) absl::StrAppend(&text, " dropout=", dropout);
  if (input_dropout > 0) absl::StrAppend(&text, " input_dropout=", input_dropout);
  return text;
}

nlohmann::json ModelSpec::ToJson() const {
  return {{"architecture", ArchitectureName(architecture)},
          {"input_shape", input_shape},
          {"num_classes", num_classes},
          {"hidden", hidden},
          {"dropout", dropout},
          {"input_dropout", input_dropout}};
}

absl::StatusOr<ModelSpec> ModelSpec::FromJson(const nlohmann::json& json) {
  ModelSpec spec;
  try {
    auto arch = ParseArchitecture(json.at("architecture").get<std::string>());
    if (!arch.ok()) return arch.status();
    spec.architecture = *arch;
    spec.input_shape = json.at("input_shape").get<std::vector<int64_t>>();
    spec.num_classes = json.at("num_classes").get<int64_t>();
    spec.hidden = json.at("hidden").get<std::vector<int64_t>>();
    spec.dropout = json.at("dropout").get<double>();
    spec.input_dropout = json.at("input_dropout").get<double>();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed model spec: ", e.what()));
  }
  absl::Status valid = spec.Validate();
  if (!valid.ok()) return valid;
  return spec;
}

bool ModelSpec::operator==(const ModelSpec& other) const {
  return architecture == other.architecture && input_shape == other.input_shape &&
         num_classes == other.num_classes && hidden == other.hidden && dropout == other.dropout &&
         input_dropout == other.input_dropout;
}

}  // namespace retort::models
