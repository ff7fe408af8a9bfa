// Llama checkpoints in Hugging Face's directory layout, the one
// transformers' LlamaForCausalLM.from_pretrained(dir) loads:
//
//   <dir>/config.json        LlamaConfig::ToHuggingFaceJson()
//   <dir>/model.safetensors  every parameter under its transformers name,
//                            with metadata {"format": "pt"} (transformers
//                            refuses files without it)
//   <dir>/tokenizer.model    the SentencePiece model, when one is given
//                            (transformers' LlamaTokenizer reads it)
//
// Files are written atomically. Loading accepts float32, bfloat16 and
// float16 weights (converted to float32), ignores the rotary inv_freq
// buffers older transformers versions saved, and rejects anything else that
// does not fit the config with an error naming the file and the tensor.
#ifndef RETORT_MODELS_LLAMA_CHECKPOINT_H_
#define RETORT_MODELS_LLAMA_CHECKPOINT_H_

#include <map>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "models/llama.h"
#include "models/safetensors_file.h"

namespace retort::models {

struct LlamaSaveOptions {
  torch::ScalarType dtype = torch::kFloat32;    // of the stored weights: float32, bfloat16, float16
  std::string tokenizer_model;                  // copied in as tokenizer.model when not empty
  std::map<std::string, std::string> metadata;  // added to the safetensors metadata
};

// True when `path` is a directory holding a config.json.
bool IsLlamaCheckpoint(const std::string& path);

// The parameters under their transformers names, in `dtype`. A quantized
// model (model.quantization) stores each quantized weight W as "W" (int8
// codes [out, in], or for 4 bits uint8 [out, in / 2], two codes a byte, low
// nibble first, each + 8) and "W_scale" (float32 [out, in / group]), and
// says how in the metadata "retort.quantization" (docs/compaction.md).
// Works for any CausalLm (a sliced one too): tensors under its parameter
// names.
NamedTensors LlamaTensors(CausalLm& model, torch::ScalarType dtype = torch::kFloat32);

// Loads tensors in that quantized layout into `model` (float): projections
// become quantized, the embeddings (when quantized) their dequantized
// values. DATA_LOSS naming the file and tensor for anything that does not fit.
absl::Status LoadQuantizedLlamaTensors(const NamedTensors& tensors, const std::string& source,
                                       const WeightQuantization& q, CausalLm* model);

// config.json's "retort_quantization" object, and back (DATA_LOSS naming
// `source` for a malformed one).
nlohmann::json QuantizationJson(const WeightQuantization& q);
absl::StatusOr<WeightQuantization> QuantizationFromJson(const nlohmann::json& json,
                                                        const std::string& source);

// Copies `tensors` into `model`'s parameters: every parameter must be there
// with its shape (DATA_LOSS naming the tensor otherwise); `source` names the
// file in errors.
absl::Status LoadLlamaTensors(const NamedTensors& tensors, const std::string& source,
                              LlamaModel* model);

absl::Status SaveLlamaCheckpoint(LlamaModel& model, const std::string& dir,
                                 const LlamaSaveOptions& options = {});

// Quantized models are saved in the quantized layout, with
// "retort_quantization" in config.json; loading reads either.
// NOT_FOUND for a missing directory or file, INVALID_ARGUMENT for a config
// we cannot build, DATA_LOSS for weights that do not fit it.
absl::StatusOr<std::shared_ptr<LlamaModel>> LoadLlamaCheckpoint(const std::string& dir);

// Reads only the config.
absl::StatusOr<LlamaConfig> ReadLlamaConfig(const std::string& dir);

}  // namespace retort::models

#endif  // RETORT_MODELS_LLAMA_CHECKPOINT_H_
