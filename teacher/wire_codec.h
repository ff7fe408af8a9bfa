// The Distill wire format in tensors: encoding requests and answers into
// messages of bounded size, and decoding them back. The server encodes
// answers and decodes requests; the trainer's client does the reverse.
//
// Answers carry log_softmax(logits / T) per position (a row, or a token of a
// row) either dense or as the top k values with their class indices and the
// log of the mass outside them. Decoding top-k back to a dense distribution
// spreads the tail mass evenly over the other classes, so every decoded row
// sums to one and the top-k entries are exact (to the value dtype).
#ifndef RETORT_TEACHER_WIRE_CODEC_H_
#define RETORT_TEACHER_WIRE_CODEC_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "retort/v1/teacher.pb.h"
#include "teacher/sampled_targets.h"
#include "teacher/top_k.h"

namespace retort::teacher {

// Default target size of one message (gRPC's own limit is 4 MiB).
inline constexpr int64_t kDefaultMaxMessageBytes = int64_t{1} << 20;

// How a client wants log-probabilities sent.
struct OutputSpec {
  v1::OutputKind kind = v1::OUTPUT_DENSE;
  int32_t top_k = 0;  // OUTPUT_TOP_K only
  v1::DType value_dtype = v1::DTYPE_FLOAT32;
  // Client side only: keep top-k answers in their sparse form (Answer::top_k)
  // instead of decoding them into dense distributions. Language-model
  // trainers use it: a dense [tokens, vocabulary] tensor is what top-k saves.
  bool keep_top_k = false;
  int32_t samples = 0;  // OUTPUT_SAMPLED only (last: aggregate initialisers list the rest)

  // Parses "dense", "topk" (the values of --teacher_output), "sampled" (what
  // --teacher_samples asks for) and "fp32", "fp16", "bf16"; `top_k` is the k
  // of topk and the draws of sampled.
  static absl::StatusOr<OutputSpec> Parse(const std::string& kind, int32_t top_k,
                                          const std::string& value_dtype);
  std::string Describe() const;  // "dense fp32", "top-5 bf16", "sampled N=32"
};

// torch dtype of a wire dtype; INVALID_ARGUMENT for ones torch lacks.
absl::StatusOr<torch::ScalarType> TorchDType(v1::DType dtype);

// Writes `tensor` converted to `dtype` (row-major, little endian).
void TensorToWire(const torch::Tensor& tensor, v1::DType dtype, v1::Tensor* out);
// A float32 (or int64 for integer dtypes) copy of a validated wire tensor.
absl::StatusOr<torch::Tensor> TensorFromWire(const v1::Tensor& tensor, const std::string& what);

// Splits a request into parts of at most about `max_message_bytes` each.
// `query_ids` (int64 [rows, T, m] for token inputs [rows, T]) asks for the
// log-probabilities at those ids per position; undefined for none.
std::vector<v1::DistillRequest> EncodeRequest(uint64_t sequence, const torch::Tensor& inputs,
                                              double temperature, const OutputSpec& output,
                                              const std::vector<std::string>& hidden_layers,
                                              const torch::Tensor& query_ids,
                                              int64_t max_message_bytes);

// The query ids of a validated request as int64 [positions, m] (positions =
// rows * sequence_length, row-major); undefined when it asks for none.
absl::StatusOr<torch::Tensor> RequestQueryIds(const v1::DistillRequest& request);

// Inputs of a validated request as a tensor (float32, or int64 token ids).
absl::StatusOr<torch::Tensor> RequestInputs(const v1::DistillRequest& request);

// The answer to one request, before encoding or after decoding.
struct Answer {
  // float32 [positions, num_classes]; undefined when the answer was decoded
  // by an assembler that keeps top-k answers sparse (then top_k is set).
  torch::Tensor log_probs;
  TopKLogProbs top_k;
  // An OUTPUT_SAMPLED answer: set by the server before encoding (from
  // log_probs and the rows' keys), and by the decoder (then log_probs and
  // top_k are undefined).
  SampledTargets sampled;
  std::map<std::string, torch::Tensor> hidden;  // float32 [positions, ...]
  // With query ids: float32 [positions, m], the log-probabilities at them
  // (set by the server from log_probs before encoding, and by the decoder).
  torch::Tensor query_log_probs;
};

// Splits an answer into responses of at most about `max_message_bytes`
// (a single position larger than that gets a message of its own).
std::vector<v1::DistillResponse> EncodeAnswer(uint64_t sequence, const Answer& answer,
                                              const OutputSpec& output, int64_t max_message_bytes);

// Decodes one response's block into dense float32 log-probabilities.
absl::StatusOr<torch::Tensor> DecodeLogProbBlock(const v1::LogProbBlock& block,
                                                 int64_t num_classes);
// Decodes a top-k block, checking its shapes and indices.
// A sampled block in top-k form (SampledTargets::ToTopK).
absl::StatusOr<TopKLogProbs> DecodeTopKBlock(const v1::LogProbBlock& block, int64_t num_classes);
// Decodes a sampled block, checking its shapes, ids and counts.
absl::StatusOr<SampledTargets> DecodeSampledBlock(const v1::LogProbBlock& block,
                                                  int64_t num_classes);

// Joins the responses to one request (one assembler per request). Checks
// that parts arrive in order, cover every position once and agree.
class AnswerAssembler {
 public:
  // With `keep_top_k`, top-k and sampled responses are assembled into
  // Answer::top_k (sampled ones also into Answer::sampled) and not decoded
  // into dense log-probabilities.
  explicit AnswerAssembler(bool keep_top_k = false) : keep_top_k_(keep_top_k) {}

  // Adds one response part. Returns the answer after the last part,
  // std::nullopt before; a response that carries an error returns it.
  absl::StatusOr<std::optional<Answer>> Add(const v1::DistillResponse& response);

 private:
  bool keep_top_k_ = false;
  uint32_t next_part_ = 0;
  int64_t positions_ = 0;
  std::vector<torch::Tensor> log_probs_;
  std::vector<TopKLogProbs> top_k_;
  std::vector<SampledTargets> sampled_;
  int64_t classes_ = 0;
  std::map<std::string, std::vector<torch::Tensor>> hidden_;
  std::vector<torch::Tensor> query_log_probs_;
};

}  // namespace retort::teacher

#endif  // RETORT_TEACHER_WIRE_CODEC_H_
