// The student's log-probabilities on the teacher's buckets (and at the
// labels), with a hand-written backward: the language-model distillation
// loss's hot path.
//
// Written with autograd ops, collapsing softmax(z / T) over V classes onto k
// buckets and a tail reads and writes [N, V] tensors about a dozen times a
// step (z / T, two logsumexps, a scattered copy, and their backwards), each
// 32 MiB for 16 x 128 tokens over 4,096 ids. Here the forward pass is one
// softmax, one max and one sum over [N, V], and the backward pass writes the
// gradient once, with small [N, k] gathers and scatters around them.
#ifndef RETORT_TRAINER_LM_BUCKET_LOG_SOFTMAX_H_
#define RETORT_TRAINER_LM_BUCKET_LOG_SOFTMAX_H_

#include <torch/torch.h>

namespace retort::trainer {

struct BucketLogProbs {
  // [N, k + 1]: log q at each of `indices`, then log of q's mass outside
  // them (the tail); [N, k] without a tail bucket.
  torch::Tensor buckets;
  // [N]: log softmax(z) at each label (temperature 1); [0] when no labels.
  torch::Tensor labels;
};

// q = softmax(logits / temperature) on the buckets given by `indices`, and
// log softmax(logits) at `labels`, differentiable with respect to `logits`.
//
// logits: float or double [N, V]. indices: int64 [N, k], each in [0, V); a
// row may repeat an id (sampled targets pad with id 0), and the tail is the
// mass outside the distinct ids (-inf where they cover the vocabulary).
// `tail_bucket`: whether to append the tail (a row of every id once has
// none). labels: int64 [N] in [0, V), or undefined; given only with
// temperature == 1. Rows where the tail is below about 1e-30 are recomputed
// with a shifted logsumexp, so log q_tail stays accurate for any finite
// logits.
BucketLogProbs BucketLogSoftmax(const torch::Tensor& logits, const torch::Tensor& indices,
                                bool tail_bucket, const torch::Tensor& labels, double temperature);

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_LM_BUCKET_LOG_SOFTMAX_H_
