// Compaction commands: prune or quantize a checkpoint (with a before/after table) and
// export one in the formats other tools load (safetensors + config.json,
// GGUF).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/tokenizer_files.h"
#include "data/fashion_mnist.h"
#include "data/token_sequences.h"
#include "models/checkpoint_file.h"
#include "models/llama_checkpoint.h"
#include "models/safetensors_shards.h"
#include "models/sliced_llama.h"
#include "student/gguf_export.h"
#include "student/prune.h"
#include "student/quantize.h"
#include "student/slice.h"
#include "tools/cli/commands.h"
#include "tools/cli/flags.h"
#include "trainer/classifier/evaluate.h"
#include "trainer/lm/lm_evaluate.h"

// Defined with the language-model commands (lm_commands.cc).
ABSL_DECLARE_FLAG(std::string, data);
ABSL_DECLARE_FLAG(int64_t, seq_len);
ABSL_DECLARE_FLAG(int64_t, eval_sequences);

ABSL_FLAG(std::string, quantize, "int8",
          "Weight quantization: int8 (per output channel), int8-g32, int4 (groups of 64), "
          "int4-g32, int4-g128.");
ABSL_FLAG(int64_t, group_size, 0, "Columns per scale (0: the scheme's default).");
ABSL_FLAG(bool, quantize_embeddings, true,
          "Quantize a language model's embedding matrix (and so a tied output head) too.");
ABSL_FLAG(std::string, format, "gguf", "Export format: gguf, or safetensors (a Llama directory).");
ABSL_FLAG(std::string, gguf_type, "f16", "GGUF matrix type: f32, f16, q8_0, q4_0.");
ABSL_FLAG(std::string, out, "", "The file (gguf) or directory (safetensors) to write.");
ABSL_FLAG(std::string, method, "magnitude",
          "Pruning scores: magnitude (|W|) or activation (|W| times calibration input norms).");
ABSL_FLAG(double, sparsity, 0.5, "Unstructured pruning: share of each matrix's weights zeroed.");
ABSL_FLAG(bool, structured, false,
          "Remove whole units (a smaller dense model) instead of zeroing weights: MLP neurons "
          "and attention heads of a Llama, hidden units of an MLP, channels of a CNN.");
ABSL_FLAG(double, fraction, 0.25,
          "Structured pruning: share of each layer's MLP neurons (classifiers: units, channels) "
          "removed; slice: share of the residual width deleted.");
ABSL_FLAG(double, heads_fraction, 0,
          "Structured pruning of a Llama: share of each block's attention heads removed, in "
          "whole key/value groups (0: keep them all).");
ABSL_FLAG(int64_t, multiple_of, 16,
          "Structured pruning: neurons kept round to a multiple of this; slice: the kept width "
          "(8 is SliceGPT's usual choice).");
ABSL_FLAG(int64_t, calibration_sequences, 64,
          "Training sequences (or examples x 100 for classifiers) run to collect input norms.");
ABSL_FLAG(int64_t, bench_tokens, 32768,
          "Tokens (or samples) of inference timed, three times, for each row of a table "
          "(the best of the three is reported).");

namespace retort::cli {
namespace {

using Clock = std::chrono::steady_clock;

// One row of the before/after table.
struct Row {
  std::string name;
  int64_t parameters = 0;  // of the architecture
  int64_t nonzero = 0;     // parameters (or quantization codes) that are not zero
  int64_t bytes = 0;       // of the weights as stored
  std::string metric;      // "perplexity" or "test accuracy"
  double value = 0;
  double per_second = 0;  // tokens/s or samples/s of inference
  nlohmann::json ToJson() const {
    return {{"name", name},  {"parameters", parameters}, {"nonzero", nonzero}, {"bytes", bytes},
            {metric, value}, {"per_second", per_second}};
  }
};

void PrintTable(const std::vector<Row>& rows, const std::string& rate_unit) {
  std::printf("%-34s %10s %10s %12s %14s %14s\n", "model", "params", "nonzero", "bytes",
              rows[0].metric.c_str(), rate_unit.c_str());
  for (const Row& r : rows) {
    std::printf("%-34s %10lld %10lld %12lld %14.4f %14.0f\n", r.name.c_str(),
                static_cast<long long>(r.parameters), static_cast<long long>(r.nonzero),
                static_cast<long long>(r.bytes), r.value, r.per_second);
  }
  const Row& a = rows.front();
  const Row& b = rows.back();
  std::printf("\n%s: %.2fx smaller, %s %+.4f (%+.2f%%), inference %.2fx the speed\n",
              b.name.c_str(), static_cast<double>(a.bytes) / static_cast<double>(b.bytes),
              a.metric.c_str(), b.value - a.value, 100.0 * (b.value - a.value) / a.value,
              b.per_second / a.per_second);
}

// Forward passes over random tokens in eval mode: tokens per second.
double LmTokensPerSecond(models::CausalLm& model, int64_t seq_len, int64_t tokens) {
  torch::InferenceMode guard;
  const models::LlamaConfig& config = model.config();
  const int64_t batch = 8;
  seq_len = std::min(seq_len, config.max_position_embeddings);
  const torch::Tensor input = torch::randint(config.vocab_size, {batch, seq_len}, torch::kInt64);
  model.forward(input);  // warm-up
  const int64_t passes = std::max<int64_t>(1, tokens / (batch * seq_len));
  // The best of three windows: the others are the machine's noise.
  double best = 0;
  for (int window = 0; window < 3; ++window) {
    const auto start = Clock::now();
    for (int64_t i = 0; i < passes; ++i) model.forward(input);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::max(best, static_cast<double>(passes * batch * seq_len) / seconds);
  }
  return best;
}

double ClassifierSamplesPerSecond(models::Classifier& model, int64_t samples) {
  torch::InferenceMode guard;
  model.eval();
  std::vector<int64_t> shape = {256};
  for (int64_t d : model.spec().input_shape) shape.push_back(d);
  const torch::Tensor input = torch::rand(shape);
  model.forward(input);
  const int64_t passes = std::max<int64_t>(1, samples / 256);
  double best = 0;
  for (int window = 0; window < 3; ++window) {
    const auto start = Clock::now();
    for (int64_t i = 0; i < passes; ++i) model.forward(input);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::max(best, static_cast<double>(passes * 256) / seconds);
  }
  return best;
}

absl::Status WriteReport(const std::string& path, nlohmann::json j, const std::vector<Row>& rows) {
  j["rows"] = nlohmann::json::array();
  for (const Row& r : rows) j["rows"].push_back(r.ToJson());
  return WriteFileAtomically(path, j.dump(2) + "\n");
}

nlohmann::json QuantizeJson(const std::string& checkpoint, const student::QuantizeOptions& q,
                            const student::QuantizeReport& report) {
  return {{"checkpoint", checkpoint},
          {"scheme", q.Describe()},
          {"quantized_tensors", report.quantized_tensors},
          {"fallback_tensors", report.fallback_tensors},
          {"max_relative_error", report.max_relative_error}};
}

// The validation tokens of --data, or null when --data is not given.
absl::StatusOr<std::shared_ptr<data::TokenSequenceDataset>> LmValidationFromFlags() {
  const std::string data_dir = absl::GetFlag(FLAGS_data);
  if (data_dir.empty()) return std::shared_ptr<data::TokenSequenceDataset>();
  return data::TokenSequenceDataset::Open(data_dir + "/valid.tokens", absl::GetFlag(FLAGS_seq_len));
}

// Parameters, and those not zero; a quantized projection counts its codes.
void CountParameters(torch::nn::Module& model, Row* row) {
  for (const auto& item : model.named_modules()) {
    for (const auto& p : item.value()->named_parameters(/*recurse=*/false)) {
      auto projection = std::dynamic_pointer_cast<models::ProjectionImpl>(item.value());
      if (projection && projection->is_quantized()) {
        const torch::Tensor codes = projection->Quantized().codes;
        row->parameters += codes.numel();
        row->nonzero += (codes != 0).sum().item<int64_t>();
      } else {
        row->parameters += p.value().numel();
        row->nonzero += (p.value() != 0).sum().item<int64_t>();
      }
    }
  }
}

// Perplexity on `validation` (when given) and inference tokens/s of any
// causal LM (a Llama, a sliced one).
absl::StatusOr<Row> MeasureLm(models::CausalLm& model, const std::string& name, int64_t bytes,
                              const data::Dataset* validation) {
  Row row;
  row.name = name;
  CountParameters(model, &row);
  row.bytes = bytes;
  row.metric = "perplexity";
  model.eval();
  if (validation != nullptr) {
    RETORT_ASSIGN_OR_RETURN(
        trainer::LmEvalResult r,
        trainer::EvaluateLm(model, *validation,
                            {.batch_size = absl::GetFlag(FLAGS_batch_size),
                             .max_sequences = absl::GetFlag(FLAGS_eval_sequences)}));
    row.value = r.perplexity;
  }
  row.per_second =
      LmTokensPerSecond(model, absl::GetFlag(FLAGS_seq_len), absl::GetFlag(FLAGS_bench_tokens));
  std::fprintf(stderr, "[compact] %s: %lld bytes, perplexity %.3f, %.0f tokens/s\n", name.c_str(),
               static_cast<long long>(bytes), row.value, row.per_second);
  return row;
}

// Test accuracy and inference samples/s.
absl::StatusOr<Row> MeasureClassifier(models::Classifier& model, const std::string& name,
                                      int64_t bytes, const data::Dataset& test) {
  Row row;
  row.name = name;
  CountParameters(model, &row);
  row.bytes = bytes;
  row.metric = "test accuracy";
  RETORT_ASSIGN_OR_RETURN(trainer::EvalResult r, trainer::Evaluate(model, test));
  row.value = r.accuracy();
  row.per_second = ClassifierSamplesPerSecond(model, absl::GetFlag(FLAGS_bench_tokens));
  std::fprintf(stderr, "[compact] %s: accuracy %.4f\n", name.c_str(), row.value);
  return row;
}

int64_t Float32Bytes(torch::nn::Module& model) {
  int64_t n = 0;
  for (const auto& p : model.parameters()) n += p.numel() * 4;
  return n;
}

absl::Status QuantizeLm(const std::string& checkpoint, const student::QuantizeOptions& q,
                        const std::string& out_dir) {
  // A Llama, or a sliced one.
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<models::CausalLm> model,
                          models::LoadCausalLm(checkpoint));
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<data::TokenSequenceDataset> validation,
                          LmValidationFromFlags());
  auto measure = [&](const std::string& name, int64_t bytes) {
    return MeasureLm(*model, name, bytes, validation.get());
  };
  RETORT_ASSIGN_OR_RETURN(int64_t float_bytes, models::SafetensorsWeightsBytes(checkpoint));
  std::vector<Row> rows;
  RETORT_ASSIGN_OR_RETURN(Row before, measure(model->quantization.Describe(), float_bytes));
  rows.push_back(before);
  RETORT_ASSIGN_OR_RETURN(student::QuantizeReport report, student::QuantizeLlama(q, model.get()));
  RETORT_RETURN_IF_ERROR(model->Save(out_dir, FindTokenizerFile(checkpoint)));
  RETORT_ASSIGN_OR_RETURN(int64_t quantized_bytes, models::SafetensorsWeightsBytes(out_dir));
  RETORT_ASSIGN_OR_RETURN(Row after, measure(model->quantization.Describe(), quantized_bytes));
  rows.push_back(after);
  std::printf(
      "%s -> %s (%s; %lld tensors quantized, %lld fell back to int8 per-channel; "
      "max relative weight error %.4f)\n\n",
      checkpoint.c_str(), out_dir.c_str(), model->config().Describe().c_str(),
      static_cast<long long>(report.quantized_tensors),
      static_cast<long long>(report.fallback_tensors), report.max_relative_error);
  PrintTable(rows, "tokens/s");
  if (!validation) std::printf("(no --data: perplexity not measured)\n");
  return WriteReport(out_dir + "/quantize.json", QuantizeJson(checkpoint, q, report), rows);
}

absl::Status QuantizeClassifier(const std::string& checkpoint, const student::QuantizeOptions& q,
                                const std::string& out_dir) {
  RETORT_ASSIGN_OR_RETURN(models::LoadedCheckpoint loaded, models::ReadCheckpoint(checkpoint));
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<const data::Dataset> test,
                          data::LoadFashionMnistTest(DataOptionsFromFlags()));
  models::Classifier& model = *loaded.model;
  auto measure = [&](const std::string& name, int64_t bytes) {
    return MeasureClassifier(model, name, bytes, *test);
  };
  const int64_t float_bytes = Float32Bytes(model);
  std::vector<Row> rows;
  RETORT_ASSIGN_OR_RETURN(Row before, measure("float32", float_bytes));
  rows.push_back(before);
  RETORT_ASSIGN_OR_RETURN(student::QuantizeReport report, student::QuantizeClassifier(q, &model));
  RETORT_RETURN_IF_ERROR(MakeDirs(out_dir));
  nlohmann::json meta = loaded.meta;
  meta["quantization"] = q.Describe();
  RETORT_RETURN_IF_ERROR(models::WriteCheckpoint(out_dir + "/model.pt", model, meta));
  RETORT_ASSIGN_OR_RETURN(Row after, measure(q.Describe(), report.quantized_bytes));
  rows.push_back(after);
  std::printf(
      "%s -> %s/model.pt (%s; weights stored as their dequantized float32 values, the "
      "bytes column counts them quantized; %lld tensors fell back to int8 per-channel)\n\n",
      checkpoint.c_str(), out_dir.c_str(), model.spec().Describe().c_str(),
      static_cast<long long>(report.fallback_tensors));
  PrintTable(rows, "samples/s");
  return WriteReport(out_dir + "/quantize.json", QuantizeJson(checkpoint, q, report), rows);
}

absl::Status PruneLm(const std::string& checkpoint, const std::string& out_dir,
                     student::PruneScore score) {
  // A Llama, or (unstructured only) a sliced one.
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<models::CausalLm> model,
                          models::LoadCausalLm(checkpoint));
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<data::TokenSequenceDataset> validation,
                          LmValidationFromFlags());
  std::vector<Row> rows;
  RETORT_ASSIGN_OR_RETURN(int64_t before_bytes, models::SafetensorsWeightsBytes(checkpoint));
  RETORT_ASSIGN_OR_RETURN(Row before, MeasureLm(*model, "dense", before_bytes, validation.get()));
  rows.push_back(before);
  std::unique_ptr<student::InputNorms> norms;
  if (score == student::PruneScore::kActivation) {
    const std::string data_dir = absl::GetFlag(FLAGS_data);
    if (data_dir.empty()) {
      return absl::InvalidArgumentError(
          "--method=activation needs calibration tokens: --data=DIR (its train split is used)");
    }
    RETORT_ASSIGN_OR_RETURN(
        std::shared_ptr<data::TokenSequenceDataset> train,
        data::TokenSequenceDataset::Open(data_dir + "/train.tokens", absl::GetFlag(FLAGS_seq_len)));
    RETORT_ASSIGN_OR_RETURN(student::InputNorms n,
                            student::CollectLlamaInputNorms(
                                *model, *train, absl::GetFlag(FLAGS_calibration_sequences)));
    norms = std::make_unique<student::InputNorms>(std::move(n));
  }
  const std::string method = absl::GetFlag(FLAGS_method);
  std::string name;
  nlohmann::json j = {{"checkpoint", checkpoint}, {"method", method}};
  student::PruneReport report;
  if (absl::GetFlag(FLAGS_structured)) {
    // Both kinds are scored on the unpruned model's calibration statistics.
    const double fraction = absl::GetFlag(FLAGS_fraction);
    const double heads = absl::GetFlag(FLAGS_heads_fraction);
    std::shared_ptr<models::LlamaModel> llama =
        std::dynamic_pointer_cast<models::LlamaModel>(model);
    if (llama == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(checkpoint,
                       " is SliceGPT-sliced; structured pruning takes a standard Llama (prune "
                       "before slicing), unstructured pruning (--sparsity) takes either"));
    }
    const int64_t parameters_before = llama->config().ParameterCount();
    std::vector<std::string> parts;
    if (heads > 0) {
      RETORT_ASSIGN_OR_RETURN(
          llama, student::PruneLlamaAttentionHeads(*llama, heads, score, norms.get(), &report));
      parts.push_back(absl::StrFormat("heads -%.0f%%", 100 * heads));
    }
    if (fraction > 0) {
      RETORT_ASSIGN_OR_RETURN(
          llama, student::PruneLlamaMlpNeurons(*llama, fraction, score, norms.get(),
                                               absl::GetFlag(FLAGS_multiple_of), &report));
      parts.push_back(absl::StrFormat("mlp neurons -%.0f%%", 100 * fraction));
    }
    model = llama;
    if (parts.empty()) {
      return absl::InvalidArgumentError(
          "--structured with --fraction=0 and --heads_fraction=0 removes nothing; set either");
    }
    report.parameters_before = parameters_before;
    name = absl::StrFormat("%s (%s)", absl::StrJoin(parts, ", "), method);
    j["structured"] = true;
    j["fraction"] = fraction;
    j["heads_fraction"] = heads;
    j["intermediate_size"] = model->config().intermediate_size;
    j["num_attention_heads"] = model->config().num_attention_heads;
    j["num_key_value_heads"] = model->config().num_key_value_heads;
  } else {
    const double sparsity = absl::GetFlag(FLAGS_sparsity);
    RETORT_ASSIGN_OR_RETURN(
        report, student::PruneLlamaUnstructured(sparsity, score, norms.get(), model.get()));
    name = absl::StrFormat("%.0f%% sparse (%s)", 100 * sparsity, method);
    j["structured"] = false;
    j["sparsity"] = sparsity;
  }
  RETORT_RETURN_IF_ERROR(model->Save(out_dir, FindTokenizerFile(checkpoint)));
  RETORT_ASSIGN_OR_RETURN(int64_t after_bytes, models::SafetensorsWeightsBytes(out_dir));
  RETORT_ASSIGN_OR_RETURN(Row after, MeasureLm(*model, name, after_bytes, validation.get()));
  rows.push_back(after);
  std::printf("%s -> %s (%s)\n\n", checkpoint.c_str(), out_dir.c_str(),
              model->config().Describe().c_str());
  PrintTable(rows, "tokens/s");
  if (!absl::GetFlag(FLAGS_structured)) {
    std::printf("(unstructured: the tensors stay dense, so bytes and speed do not change)\n");
  }
  return WriteReport(out_dir + "/prune.json", j, rows);
}

absl::Status PruneClassifier(const std::string& checkpoint, const std::string& out_dir,
                             student::PruneScore score) {
  RETORT_ASSIGN_OR_RETURN(models::LoadedCheckpoint loaded, models::ReadCheckpoint(checkpoint));
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<const data::Dataset> test,
                          data::LoadFashionMnistTest(DataOptionsFromFlags()));
  std::shared_ptr<models::Classifier> model = loaded.model;
  std::vector<Row> rows;
  RETORT_ASSIGN_OR_RETURN(Row before,
                          MeasureClassifier(*model, "dense", Float32Bytes(*model), *test));
  rows.push_back(before);
  std::unique_ptr<student::InputNorms> norms;
  if (score == student::PruneScore::kActivation) {
    RETORT_ASSIGN_OR_RETURN(data::TrainValidationSplit split,
                            data::LoadFashionMnistTrain(DataOptionsFromFlags()));
    RETORT_ASSIGN_OR_RETURN(
        student::InputNorms n,
        student::CollectClassifierInputNorms(*model, *split.train,
                                             100 * absl::GetFlag(FLAGS_calibration_sequences)));
    norms = std::make_unique<student::InputNorms>(std::move(n));
  }
  const std::string method = absl::GetFlag(FLAGS_method);
  std::string name;
  nlohmann::json j = {{"checkpoint", checkpoint}, {"method", method}};
  student::PruneReport report;
  if (absl::GetFlag(FLAGS_structured)) {
    const double fraction = absl::GetFlag(FLAGS_fraction);
    RETORT_ASSIGN_OR_RETURN(
        model, student::PruneClassifierNeurons(*model, fraction, score, norms.get(),
                                               absl::GetFlag(FLAGS_multiple_of), &report));
    const bool cnn = model->spec().architecture == models::Architecture::kCnn;
    name = absl::StrFormat("%s -%.0f%% (%s)", cnn ? "channels" : "neurons", 100 * fraction, method);
    j["structured"] = true;
    j["fraction"] = fraction;
    j["spec"] = model->spec().ToJson();
  } else {
    const double sparsity = absl::GetFlag(FLAGS_sparsity);
    RETORT_ASSIGN_OR_RETURN(
        report, student::PruneClassifierUnstructured(sparsity, score, norms.get(), model.get()));
    name = absl::StrFormat("%.0f%% sparse (%s)", 100 * sparsity, method);
    j["structured"] = false;
    j["sparsity"] = sparsity;
  }
  RETORT_RETURN_IF_ERROR(MakeDirs(out_dir));
  nlohmann::json meta = loaded.meta;
  meta["pruning"] = j;
  RETORT_RETURN_IF_ERROR(models::WriteCheckpoint(out_dir + "/model.pt", *model, meta));
  RETORT_ASSIGN_OR_RETURN(Row after, MeasureClassifier(*model, name, Float32Bytes(*model), *test));
  rows.push_back(after);
  std::printf("%s -> %s/model.pt (%s)\n\n", checkpoint.c_str(), out_dir.c_str(),
              model->spec().Describe().c_str());
  PrintTable(rows, "samples/s");
  return WriteReport(out_dir + "/prune.json", j, rows);
}

absl::Status SliceLm(const std::string& checkpoint, const std::string& out_dir) {
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<models::LlamaModel> model,
                          models::LoadLlamaCheckpoint(checkpoint));
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<data::TokenSequenceDataset> validation,
                          LmValidationFromFlags());
  const std::string data_dir = absl::GetFlag(FLAGS_data);
  if (data_dir.empty()) {
    return absl::InvalidArgumentError(
        "slicing needs calibration tokens: --data=DIR (its train split is used)");
  }
  RETORT_ASSIGN_OR_RETURN(
      std::shared_ptr<data::TokenSequenceDataset> train,
      data::TokenSequenceDataset::Open(data_dir + "/train.tokens", absl::GetFlag(FLAGS_seq_len)));
  std::vector<Row> rows;
  RETORT_ASSIGN_OR_RETURN(int64_t before_bytes, models::SafetensorsWeightsBytes(checkpoint));
  RETORT_ASSIGN_OR_RETURN(Row before, MeasureLm(*model, "dense", before_bytes, validation.get()));
  rows.push_back(before);
  student::SliceOptions o;
  o.fraction = absl::GetFlag(FLAGS_fraction);
  o.multiple_of = absl::GetFlag(FLAGS_multiple_of);
  o.calibration_sequences = absl::GetFlag(FLAGS_calibration_sequences);
  student::SliceReport report;
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<models::SlicedLlamaModel> sliced,
                          student::SliceLlama(*model, *train, o, &report));
  const std::string tokenizer = FindTokenizerFile(checkpoint);
  RETORT_RETURN_IF_ERROR(models::SaveSlicedLlama(*sliced, out_dir, tokenizer));
  RETORT_ASSIGN_OR_RETURN(int64_t after_bytes, models::SafetensorsWeightsBytes(out_dir));
  RETORT_ASSIGN_OR_RETURN(Row after, MeasureLm(*sliced,
                                               absl::StrFormat("sliced %.0f%% (width %d)",
                                                               100 * o.fraction, report.width),
                                               after_bytes, validation.get()));
  rows.push_back(after);
  std::string energy;
  for (double e : report.kept_energy)
    absl::StrAppend(&energy, energy.empty() ? "" : " ", absl::StrFormat("%.3f", e));
  std::printf("%s -> %s (residual width %lld -> %lld; signal energy kept per point: %s)\n\n",
              checkpoint.c_str(), out_dir.c_str(),
              static_cast<long long>(model->config().hidden_size),
              static_cast<long long>(report.width), energy.c_str());
  PrintTable(rows, "tokens/s");
  nlohmann::json j = {{"checkpoint", checkpoint},
                      {"fraction", o.fraction},
                      {"width", report.width},
                      {"calibration_sequences", o.calibration_sequences},
                      {"kept_energy", report.kept_energy}};
  return WriteReport(out_dir + "/slice.json", j, rows);
}

// Checks --checkpoint and --out_dir.
absl::Status CheckCheckpointAndOutDir(const std::string& checkpoint, const std::string& out_dir) {
  if (checkpoint.empty()) {
    return absl::InvalidArgumentError(
        "--checkpoint is required: a Llama directory or a classifier checkpoint (.pt)");
  }
  if (out_dir.empty()) return absl::InvalidArgumentError("--out_dir is required");
  if (!PathExists(checkpoint)) {
    return absl::NotFoundError(absl::StrCat("--checkpoint: ", checkpoint, " does not exist"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunPrune() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  const std::string out_dir = absl::GetFlag(FLAGS_out_dir);
  RETORT_RETURN_IF_ERROR(CheckCheckpointAndOutDir(checkpoint, out_dir));
  RETORT_ASSIGN_OR_RETURN(student::PruneScore score,
                          student::ParsePruneScore(absl::GetFlag(FLAGS_method)));
  if (models::IsLlamaCheckpoint(checkpoint)) return PruneLm(checkpoint, out_dir, score);
  return PruneClassifier(checkpoint, out_dir, score);
}

absl::Status RunSlice() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  const std::string out_dir = absl::GetFlag(FLAGS_out_dir);
  RETORT_RETURN_IF_ERROR(CheckCheckpointAndOutDir(checkpoint, out_dir));
  if (!models::IsLlamaCheckpoint(checkpoint)) {
    return absl::InvalidArgumentError(
        "--checkpoint: slicing takes a Llama checkpoint directory (SliceGPT is for transformers)");
  }
  return SliceLm(checkpoint, out_dir);
}

absl::Status RunQuantize() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  const std::string out_dir = absl::GetFlag(FLAGS_out_dir);
  RETORT_RETURN_IF_ERROR(CheckCheckpointAndOutDir(checkpoint, out_dir));
  RETORT_ASSIGN_OR_RETURN(student::QuantizeOptions q,
                          student::QuantizeOptions::Parse(absl::GetFlag(FLAGS_quantize),
                                                          absl::GetFlag(FLAGS_group_size)));
  q.embeddings = absl::GetFlag(FLAGS_quantize_embeddings);
  if (models::IsLlamaCheckpoint(checkpoint)) return QuantizeLm(checkpoint, q, out_dir);
  return QuantizeClassifier(checkpoint, q, out_dir);
}

absl::Status RunExport() {
  RETORT_RETURN_IF_ERROR(ApplyThreadsFlag());
  const std::string checkpoint = absl::GetFlag(FLAGS_checkpoint);
  const std::string out = absl::GetFlag(FLAGS_out);
  const std::string format = absl::GetFlag(FLAGS_format);
  if (checkpoint.empty() || !models::IsLlamaCheckpoint(checkpoint)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--checkpoint must be a Llama checkpoint directory (config.json + "
                     "model.safetensors), got '",
                     checkpoint, "'"));
  }
  if (models::IsSlicedLlamaCheckpoint(checkpoint)) {
    return absl::InvalidArgumentError(absl::StrCat(
        checkpoint,
        " is SliceGPT-sliced: its blocks pass the residual stream through shortcut "
        "matrices, which neither GGUF (llama.cpp) nor transformers' LlamaForCausalLM has. Export "
        "the model before slicing; run the sliced one with `retort eval` (or quantize it)"));
  }
  if (out.empty())
    return absl::InvalidArgumentError(
        "--out is required (a file for gguf, a directory for safetensors)");
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<models::LlamaModel> model,
                          models::LoadLlamaCheckpoint(checkpoint));
  const std::string tokenizer = FindTokenizerFile(checkpoint);
  if (format == "gguf") {
    student::GgufExportOptions o;
    RETORT_ASSIGN_OR_RETURN(o.type, student::ParseGgufType(absl::GetFlag(FLAGS_gguf_type)));
    o.tokenizer_model = tokenizer;
    RETORT_ASSIGN_OR_RETURN(student::GgufExportReport r, student::ExportLlamaGguf(*model, out, o));
    std::printf(
        "%s: GGUF %s, architecture %s, %lld tensors (%lld matrices F16 where 32-blocks do not "
        "fit), %lld bytes\n",
        out.c_str(), std::string(models::GgmlTypeName(o.type)).c_str(),
        r.layout.architecture.c_str(), static_cast<long long>(r.tensors),
        static_cast<long long>(r.fallback_tensors), static_cast<long long>(r.bytes));
    if (!r.layout.note.empty()) std::printf("note: %s\n", r.layout.note.c_str());
    return absl::OkStatus();
  }
  if (format == "safetensors") {
    const std::string dtype = absl::GetFlag(FLAGS_weights_dtype);
    models::LlamaSaveOptions o;
    o.tokenizer_model = tokenizer;
    o.max_shard_bytes = absl::GetFlag(FLAGS_max_shard_bytes);
    RETORT_ASSIGN_OR_RETURN(o.dtype, WeightsDtypeFromFlags());
    // transformers has no loader for our quantized layout: write the float
    // weights the quantized model computes with.
    const std::string held = model->quantization.Describe();
    if (model->quantization.quantized()) model = student::DequantizeLlama(*model);
    RETORT_RETURN_IF_ERROR(models::SaveLlamaCheckpoint(*model, out, o));
    RETORT_ASSIGN_OR_RETURN(int64_t bytes, models::SafetensorsWeightsBytes(out));
    std::printf("%s: config.json + %s (%s, from %s, %lld bytes)%s\n", out.c_str(),
                PathExists(out + "/" + models::kSafetensorsIndexFileName)
                    ? "sharded safetensors (model.safetensors.index.json)"
                    : "model.safetensors",
                dtype.c_str(), held.c_str(), static_cast<long long>(bytes),
                (tokenizer.empty() ? "" : " + " + TokenizerFileNameFor(tokenizer)).c_str());
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--format=", format, " is not a format we write; use gguf or safetensors"));
}

}  // namespace retort::cli
