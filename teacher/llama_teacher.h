// LlamaTeacher: serves a Llama-family language model (a Hugging Face layout
// directory, models/llama_checkpoint.h) as a teacher. Inputs are token ids
// [rows, T] (int64 in process, int32 on the wire) with 1 <= T <=
// max_position_embeddings; Forward returns logits [rows, T, vocab] and the
// residual streams asked for as [rows, T, hidden]. The dynamic batcher turns
// them into per-token log-probabilities, one position per (row, token).
#ifndef RETORT_TEACHER_LLAMA_TEACHER_H_
#define RETORT_TEACHER_LLAMA_TEACHER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/llama.h"
#include "teacher/teacher.h"

namespace retort::teacher {

class LlamaTeacher : public Teacher {
 public:
  struct Options {
    std::string checkpoint_dir;  // config.json + model.safetensors (+ tokenizer.model)
    int64_t max_batch = 64;      // sequences per forward pass
    // Run the forward pass in bfloat16 (weights converted once at load;
    // outputs returned as float32). The weights hash is the float32 one.
    bool bf16 = false;
  };

  // Errors name the directory and what is wrong with it.
  static absl::StatusOr<std::unique_ptr<LlamaTeacher>> Create(const Options& options);

  // Wraps a model in memory. `tokenizer_sha256` goes into the fingerprint
  // (empty when unknown).
  static std::unique_ptr<LlamaTeacher> FromModel(std::shared_ptr<models::LlamaModel> model,
                                                 const std::string& tokenizer_sha256,
                                                 int64_t max_batch = 64, bool bf16 = false);

  const v1::TeacherFingerprint& fingerprint() const override { return fingerprint_; }
  int64_t max_batch() const override { return max_batch_; }
  absl::StatusOr<TeacherOutput> Forward(const torch::Tensor& inputs,
                                        const std::vector<std::string>& hidden_layers) override;

  models::LlamaModel& model() { return *model_; }

 private:
  LlamaTeacher(std::shared_ptr<models::LlamaModel> model, const std::string& tokenizer_sha256,
               int64_t max_batch, bool bf16);

  std::shared_ptr<models::LlamaModel> model_;
  int64_t max_batch_;
  bool bf16_;
  v1::TeacherFingerprint fingerprint_;
};

}  // namespace retort::teacher

#endif  // RETORT_TEACHER_LLAMA_TEACHER_H_
