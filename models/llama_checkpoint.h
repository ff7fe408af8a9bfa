// Llama checkpoints in Hugging Face's directory layout, the one
// transformers' LlamaForCausalLM.from_pretrained(dir) loads:
//
//   <dir>/config.json        LlamaConfig::ToHuggingFaceJson()
//   <dir>/model.safetensors  every parameter under its transformers name,
//                            with metadata {"format": "pt"} (transformers
//                            refuses files without it); or shards and
//                            model.safetensors.index.json
//                            (models/safetensors_shards.h)
//   <dir>/tokenizer.model    the tokenizer, when one is given: SentencePiece
//   or tokenizer.json        (transformers' LlamaTokenizer) or Hugging Face's
//
// Files are written atomically. Loading memory-maps the weights, accepts
// float32, bfloat16 and float16 (converted to float32 unless the file's
// dtype is asked for), ignores the rotary inv_freq buffers older
// transformers versions saved, and rejects anything else that does not fit
// the config with an error naming the file and the tensor.
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
  torch::ScalarType dtype = torch::kFloat32;  // of the stored weights: float32, bfloat16, float16
  // Copied in as tokenizer.json (a .json file) or tokenizer.model when not
  // empty (common/tokenizer_files.h).
  std::string tokenizer_model;
  std::map<std::string, std::string> metadata;  // added to the safetensors metadata
  // Shards of at most this many bytes and an index when the weights are
  // larger; 0: one model.safetensors.
  int64_t max_shard_bytes = 0;
};

struct LlamaLoadOptions {
  // Keep the weights in the file's dtype (bfloat16 or float16 stay so,
  // viewing the mapped file: no copy); a file of mixed dtypes is converted
  // to its embedding's. False: float32 (float32 weights still view the file).
  bool keep_file_dtype = false;
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

// Makes `tensors` `model`'s parameters (sharing their memory, converted to
// float32 unless `keep_dtype`, then to the embedding's dtype): every
// parameter must be there with its shape (DATA_LOSS naming the tensor
// otherwise); `source` names the file in errors.
absl::Status LoadLlamaTensors(const NamedTensors& tensors, const std::string& source,
                              LlamaModel* model, bool keep_dtype = false);

absl::Status SaveLlamaCheckpoint(LlamaModel& model, const std::string& dir,
                                 const LlamaSaveOptions& options = {});

// Quantized models are saved in the quantized layout, with
// "retort_quantization" in config.json; loading reads either.
// NOT_FOUND for a missing directory or file, INVALID_ARGUMENT for a config
// we cannot build, DATA_LOSS for weights that do not fit it.
absl::StatusOr<std::shared_ptr<LlamaModel>> LoadLlamaCheckpoint(
    const std::string& dir, const LlamaLoadOptions& options = {});

// Reads only the config.
absl::StatusOr<LlamaConfig> ReadLlamaConfig(const std::string& dir);

}  // namespace retort::models

#endif  // RETORT_MODELS_LLAMA_CHECKPOINT_H_
