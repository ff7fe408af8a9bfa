// TeacherClient: the one way a trainer asks a teacher for soft targets, for
// every model family. A request is a batch of inputs (images, or token ids
// [B, T]), a temperature and the hidden layers wanted for feature matching;
// the answer is the teacher's log_softmax(logits / T) per row (per position
// for language models, row-major), dense or in top-k form with the log of
// the mass outside the top k, plus the hidden layers asked for.
//
// Implementations: InProcessTeacherClient (a teacher in this process),
// TeacherPoolClient (one or many teacher servers over gRPC; gRPC stays in its
// .cc files and RemoteTeacherClient), CachingTeacherClient (answers per row
// remembered), and FakeTeacherClient for tests. Whether an answer is dense or
// top-k is the client's output setting; Targets converts either way.
//
// SubmitTargets lets a caller ask ahead: it returns at once with a future,
// and the caller consumes futures in its own order, so answers can arrive in
// any order while training stays deterministic.
#ifndef RETORT_CLIENT_TEACHER_CLIENT_H_
#define RETORT_CLIENT_TEACHER_CLIENT_H_

#include <future>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "retort/v1/teacher.pb.h"
#include "teacher/top_k.h"

namespace retort::client {

class TeacherClient {
 public:
  virtual ~TeacherClient() = default;

  // The soft targets of one request.
  struct Targets {
    // float32 [rows, classes] for a dense answer; undefined for a top-k one.
    torch::Tensor log_probs;
    // A top-k answer (indices defined): k log-probabilities per row and the
    // log of the mass outside them.
    teacher::TopKLogProbs top_k;
    // The hidden layers asked for, float32 [B, ...layer shape].
    std::map<std::string, torch::Tensor> hidden;
    // With Request::query_ids: float32 [rows, m], the log-probabilities at
    // those ids (row-major over positions, as log_probs).
    torch::Tensor query_log_probs;

    bool sparse() const { return top_k.indices.defined(); }
    // Dense form; a top-k answer's tail mass is spread evenly over the
    // classes outside its top k.
    torch::Tensor Dense(int64_t classes) const;
    // Top-k form; a dense answer is the k = classes case (tail -inf).
    teacher::TopKLogProbs TopK() const;
  };
  using TargetsFuture = std::shared_future<absl::StatusOr<Targets>>;

  // What one request asks for.
  struct Request {
    torch::Tensor inputs;  // images [B, ...], or token ids int64 [B, T]
    double temperature = 1.0;
    // Names from the fingerprint's hidden_layers.
    std::vector<std::string> hidden_layers;
    // Token models, optional: int64 [B, T, m] ids whose log-probabilities
    // at `temperature` the answer also carries (Targets::query_log_probs),
    // e.g. the tokens a student sampled. Undefined: none.
    torch::Tensor query_ids;
  };

  // The fingerprint of the teacher answering; the trainer records it in its
  // checkpoints and refuses to resume against a different teacher.
  virtual absl::StatusOr<v1::TeacherFingerprint> Fingerprint() = 0;

  // Asks for the targets of `request.inputs` at its temperature, the
  // teacher's hidden activations it names and the log-probabilities at its
  // query ids. The tensors must not be modified until the future is ready.
  // The future may be deferred (its get() finishes the work): wait on it
  // with get(), not wait_for(). A client that cannot answer query ids (a
  // teacher-logit cache) fails the request with FAILED_PRECONDITION.
  virtual TargetsFuture SubmitTargets(const Request& request) = 0;

  // Conveniences over SubmitTargets: dense log-probabilities, no hidden
  // layers.
  using LogProbsFuture = std::shared_future<absl::StatusOr<torch::Tensor>>;
  LogProbsFuture Submit(const torch::Tensor& inputs, double temperature);
  absl::StatusOr<torch::Tensor> LogProbs(const torch::Tensor& inputs, double temperature);
};

// OK when `query_ids` is undefined, or int64 [B, T, m >= 1] over token
// inputs [B, T] with every id in [0, classes); INVALID_ARGUMENT saying what
// is wrong otherwise.
absl::Status ValidateQueryIds(const torch::Tensor& inputs, const torch::Tensor& query_ids,
                              int64_t classes);

}  // namespace retort::client

#endif  // RETORT_CLIENT_TEACHER_CLIENT_H_
