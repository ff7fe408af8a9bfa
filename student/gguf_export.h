// GGUF export and import of Llama-family models, in the layouts llama.cpp
// loads. The family decides llama.cpp's architecture (GgufLayoutFor):
//
//   llama    plain Llama, and Llama 3 with rope_scaling "llama3" (the
//            frequency divisors as "rope_freqs.weight", as llama.cpp's
//            converter writes them);
//   llama    Mistral too, as llama.cpp's converter maps it: llama.cpp's
//            llama architecture has no sliding window, so the file states
//            a context length of min(max_position_embeddings, window), the
//            longest over which full attention is the same function;
//   qwen2    Qwen2 / Qwen2.5 (blk.<i>.attn_{q,k,v}.bias); llama.cpp's qwen2
//            needs heads * head_dim == hidden_size;
//   qwen3    Qwen3 (blk.<i>.attn_{q,k}_norm.weight, any head_dim).
//
// Other configs are refused (UNIMPLEMENTED) naming the family and the
// feature llama.cpp's architecture lacks. Tensors:
//
//   token_embd.weight, blk.<i>.attn_norm.weight, blk.<i>.attn_{q,k,v,output}.weight,
//   blk.<i>.ffn_norm.weight, blk.<i>.ffn_{gate,up,down}.weight,
//   output_norm.weight, output.weight (absent when the embeddings are tied)
//
// with the <arch>.* hyper-parameters, general.file_type, and the
// tokenizer's vocabulary as tokenizer.ggml.* (student/gguf_vocabulary.h:
// SentencePiece as model "llama", byte-level BPE tokenizer.json as
// "gpt2"). For the llama architecture, as llama.cpp's own converter does,
// the query and key rows of each head are permuted from transformers'
// rotate-half rotary layout to the interleaved pairs ggml rotates; qwen2 and
// qwen3 rotate halves as transformers does (llama.cpp's NEOX rope) and are
// written as they are; biases (qwen2) go with their rows, q/k norms (qwen3)
// as they are, rope_freqs (llama3) after the blocks.
//
// Norm scales and biases are always F32; matrices take the requested type
// (F32, F16, Q8_0 or Q4_0), falling back to F16 for a matrix whose rows are
// not whole 32-element blocks, as llama.cpp's quantizer does. Quantized
// models are exported from their dequantized weights.
#ifndef RETORT_STUDENT_GGUF_EXPORT_H_
#define RETORT_STUDENT_GGUF_EXPORT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "models/gguf_format.h"
#include "models/llama.h"

namespace retort::student {

struct GgufExportOptions {
  models::GgmlType type = models::GgmlType::kF16;
  std::string name = "retort student";  // general.name
  // The tokenizer whose vocabulary goes in the file (llama.cpp needs one):
  // the checkpoint's tokenizer.model or tokenizer.json.
  std::string tokenizer_model;
};

// "f32", "f16", "q8_0", "q4_0" (any case). INVALID_ARGUMENT listing them.
absl::StatusOr<models::GgmlType> ParseGgufType(const std::string& name);

// How a config is written for llama.cpp.
struct GgufLayout {
  std::string architecture;     // general.architecture: "llama", "qwen2" or "qwen3"
  bool permute_rotary = false;  // q/k rows to ggml's interleaved pairs (llama)
  int64_t context_length = 0;   // <arch>.context_length
  std::string note;             // what the reader should know (Mistral's window), or empty
};

// The layout of `config`, or UNIMPLEMENTED naming the family (model_type)
// and the feature llama.cpp's architecture for it lacks.
absl::StatusOr<GgufLayout> GgufLayoutFor(const models::LlamaConfig& config);

struct GgufExportReport {
  int64_t tensors = 0;
  int64_t fallback_tensors = 0;  // matrices written F16 instead of a Q type
  int64_t bytes = 0;             // of the file
  GgufLayout layout;
};

// Writes `path` atomically. UNIMPLEMENTED as GgufLayoutFor, or for a
// tokenizer llama.cpp would run differently; INVALID_ARGUMENT for a
// tokenizer that does not fit the model's vocabulary (both as
// GgufVocabularyMetadata); errors of reading the tokenizer name its file.
absl::StatusOr<GgufExportReport> ExportLlamaGguf(models::LlamaModel& model, const std::string& path,
                                                 const GgufExportOptions& options);

// Reads a GGUF file of a llama, qwen2 or qwen3 model back into a float
// LlamaModel (dequantizing, undoing the rotary permutation). DATA_LOSS
// naming the file for a malformed file, a missing hyper-parameter or
// tensor, or a shape that does not fit; UNIMPLEMENTED for another
// architecture, or a llama file with rope_freqs (the four llama3 scaling
// parameters are not recovered from the divisors).
absl::StatusOr<std::shared_ptr<models::LlamaModel>> ImportLlamaGguf(const std::string& path);

}  // namespace retort::student

#endif  // RETORT_STUDENT_GGUF_EXPORT_H_
