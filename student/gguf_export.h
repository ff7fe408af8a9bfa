// GGUF export and import of Llama-family models, in the layout llama.cpp
// loads (general.architecture "llama"):
//
//   token_embd.weight, blk.<i>.attn_norm.weight, blk.<i>.attn_{q,k,v,output}.weight,
//   blk.<i>.ffn_norm.weight, blk.<i>.ffn_{gate,up,down}.weight,
//   output_norm.weight, output.weight (absent when the embeddings are tied)
//
// with the llama.* hyper-parameters, general.file_type, and the
// SentencePiece vocabulary as tokenizer.ggml.* (model "llama": tokens,
// scores, token types, bos/eos/unk ids). As llama.cpp's own converter does,
// the query and key rows of each head are permuted from transformers'
// rotate-half rotary layout to the interleaved pairs ggml rotates.
//
// Norm scales are always F32; matrices take the requested type (F32, F16,
// Q8_0 or Q4_0), falling back to F16 for a matrix whose rows are not whole
// 32-element blocks, as llama.cpp's quantizer does. Quantized models are
// exported from their dequantized weights.
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
  // The SentencePiece .model whose vocabulary goes in the file (llama.cpp
  // needs one); usually the checkpoint's tokenizer.model.
  std::string tokenizer_model;
};

// "f32", "f16", "q8_0", "q4_0" (any case). INVALID_ARGUMENT listing them.
absl::StatusOr<models::GgmlType> ParseGgufType(const std::string& name);

struct GgufExportReport {
  int64_t tensors = 0;
  int64_t fallback_tensors = 0;  // matrices written F16 instead of a Q type
  int64_t bytes = 0;             // of the file
};

// Writes `path` atomically. INVALID_ARGUMENT for a tokenizer whose size is
// not the model's vocabulary; errors of reading the tokenizer name its file.
absl::StatusOr<GgufExportReport> ExportLlamaGguf(models::LlamaModel& model, const std::string& path,
                                                 const GgufExportOptions& options);

// Reads a GGUF file of a llama model back into a float LlamaModel
// (dequantizing, undoing the rotary permutation). DATA_LOSS naming the file
// for a malformed file, a missing hyper-parameter or tensor, or a shape that
// does not fit; UNIMPLEMENTED for another architecture.
absl::StatusOr<std::shared_ptr<models::LlamaModel>> ImportLlamaGguf(const std::string& path);

}  // namespace retort::student

#endif  // RETORT_STUDENT_GGUF_EXPORT_H_
