#include "trainer/lm/bucket_log_softmax.h"

#include <limits>

namespace retort::trainer {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Below this tail mass the float softmax may have flushed tail classes to
// zero; such rows are recomputed from the logits with a shifted logsumexp.
constexpr double kTinyTail = 1e-30;

// Forward, with q = softmax(s), s = z / T, lse = logsumexp(s):
//   log q_i    = s_i - lse                   (one gather per bucket)
//   q_tail     = sum of q outside the ids    (one pass, in float64)
//   log q_lab  = z_label - lse               (T = 1)
// Backward, with G the upstream gradient of each output and
// S = sum of all G (buckets, tail and labels):
//   dL/ds_j = sum_{b: id_b = j} G_b - q_j S          (j among the ids)
//           = G_tail q_j / q_tail - q_j S            (j outside them)
//           + G_lab [j = label]
// and dL/dz = dL/ds / T.
class BucketLogSoftmaxFunction : public torch::autograd::Function<BucketLogSoftmaxFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& logits,
                               const torch::Tensor& indices, bool has_tail,
                               const torch::Tensor& labels, double temperature) {
    const torch::Tensor s = temperature == 1.0 ? logits : logits * (1.0 / temperature);
    torch::Tensor q = torch::softmax(s, /*dim=*/1);
    // lse from the largest class, whose q >= 1 / V keeps full precision.
    const auto [max_s, argmax] = s.max(/*dim=*/1, /*keepdim=*/true);
    const torch::Tensor lse = max_s - q.gather(1, argmax).log();
    torch::Tensor buckets = s.gather(1, indices) - lse;

    torch::Tensor q_tail = torch::empty({0}, logits.options().dtype(torch::kDouble));
    torch::Tensor tiny_rows = torch::empty({0}, indices.options());
    torch::Tensor lse_rest = torch::empty({0}, logits.options());
    if (has_tail) {
      // The tail's own sum (not 1 - the head's), so it keeps its relative
      // precision however small it is.
      const torch::Tensor q_top = q.gather(1, indices);
      q.scatter_(1, indices, 0.0);
      q_tail = q.sum(/*dim=*/1, /*keepdim=*/false, torch::kDouble);
      q.scatter_(1, indices, q_top);
      torch::Tensor log_tail = q_tail.log().to(logits.scalar_type());
      tiny_rows = (q_tail < kTinyTail).nonzero().reshape({-1});
      if (tiny_rows.numel() > 0) {
        const torch::Tensor rest = s.index_select(0, tiny_rows)
                                       .scatter(1, indices.index_select(0, tiny_rows),
                                                -std::numeric_limits<double>::infinity());
        lse_rest = rest.logsumexp(/*dim=*/1);
        log_tail.index_copy_(0, tiny_rows, lse_rest - lse.index_select(0, tiny_rows).squeeze(1));
      }
      buckets = torch::cat({buckets, log_tail.unsqueeze(1)}, /*dim=*/1);
    }
    torch::Tensor label_log_probs = torch::empty({0}, logits.options());
    if (labels.numel() > 0) {
      label_log_probs = (s.gather(1, labels.unsqueeze(1)) - lse).squeeze(1);
    }
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["has_tail"] = has_tail;
    ctx->save_for_backward({q, indices, labels, q_tail, tiny_rows, lse_rest,
                            tiny_rows.numel() > 0 ? logits : torch::Tensor()});
    return {buckets, label_log_probs};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor& q = saved[0];
    const torch::Tensor& indices = saved[1];
    const torch::Tensor& labels = saved[2];
    const torch::Tensor& q_tail = saved[3];
    const torch::Tensor& tiny_rows = saved[4];
    const double temperature = ctx->saved_data["temperature"].toDouble();
    const int64_t k = indices.size(1);
    const bool has_tail = ctx->saved_data["has_tail"].toBool();
    const bool has_labels = labels.numel() > 0;

    const torch::Tensor g = grads[0].defined()
                                ? grads[0]
                                : torch::zeros({q.size(0), k + (has_tail ? 1 : 0)}, q.options());
    const torch::Tensor g_labels =
        has_labels && grads[1].defined() ? grads[1] : torch::zeros({0}, q.options());
    torch::Tensor total = g.sum(/*dim=*/1);
    if (g_labels.numel() > 0) total = total + g_labels;
    torch::Tensor coefficient = -total;
    torch::Tensor g_tail;
    if (has_tail) {
      g_tail = g.select(1, k);
      torch::Tensor per_tail = (g_tail.to(torch::kDouble) / q_tail).to(q.scalar_type());
      if (tiny_rows.numel() > 0) per_tail.index_fill_(0, tiny_rows, 0.0);
      coefficient = coefficient + per_tail;
    }
    torch::Tensor grad = q * coefficient.unsqueeze(1);
    if (tiny_rows.numel() > 0) {
      // q_j / q_tail from the logits: exp(s_j - logsumexp of the tail).
      const torch::Tensor& logits = saved[6];
      const torch::Tensor& lse_rest = saved[5];
      const torch::Tensor s = logits.index_select(0, tiny_rows) * (1.0 / temperature);
      // A row whose ids cover the vocabulary has no tail (lse_rest = -inf).
      const torch::Tensor share = (s.scatter(1, indices.index_select(0, tiny_rows),
                                             -std::numeric_limits<double>::infinity()) -
                                   lse_rest.unsqueeze(1))
                                      .exp()
                                      .nan_to_num(0.0, 0.0, 0.0);
      grad.index_add_(0, tiny_rows, share * g_tail.index_select(0, tiny_rows).unsqueeze(1));
    }
    grad.scatter_(1, indices, -q.gather(1, indices) * total.unsqueeze(1));
    grad.scatter_add_(1, indices, g.slice(1, 0, k).contiguous());
    if (g_labels.numel() > 0) {
      grad.scatter_add_(1, labels.unsqueeze(1), g_labels.unsqueeze(1));
    }
    if (temperature != 1.0) grad.mul_(1.0 / temperature);
    return {grad, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

BucketLogProbs BucketLogSoftmax(const torch::Tensor& logits, const torch::Tensor& indices,
                                bool tail_bucket, const torch::Tensor& labels, double temperature) {
  TORCH_CHECK(logits.dim() == 2 && indices.dim() == 2 && indices.size(0) == logits.size(0),
              "BucketLogSoftmax: logits ", logits.sizes(), " and indices ", indices.sizes(),
              " must be [N, V] and [N, k]");
  TORCH_CHECK(!labels.defined() || labels.numel() == 0 || temperature == 1.0,
              "BucketLogSoftmax: labels need temperature 1, got ", temperature);
  const torch::Tensor no_labels = torch::empty({0}, indices.options());
  const torch::Tensor given =
      labels.defined() && labels.numel() > 0 ? labels.to(torch::kLong) : no_labels;
  variable_list out = BucketLogSoftmaxFunction::apply(logits, indices.to(torch::kLong), tail_bucket,
                                                      given, temperature);
  return BucketLogProbs{.buckets = out[0], .labels = out[1]};
}

}  // namespace retort::trainer
