#include "trainer/lm/bucket_log_softmax.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

namespace retort::trainer {
namespace {

// The definition, written with autograd ops: log softmax(z / T) at the ids,
// the log of the mass outside the distinct ids (a logsumexp with the ids
// masked), and log softmax(z) at the labels.
BucketLogProbs Reference(const torch::Tensor& logits, const torch::Tensor& indices,
                         const torch::Tensor& labels, double temperature) {
  const torch::Tensor s = logits / temperature;
  const torch::Tensor lse = s.logsumexp(1, /*keepdim=*/true);
  torch::Tensor buckets = s.gather(1, indices) - lse;
  if (indices.size(1) < logits.size(1)) {
    const torch::Tensor rest = s.scatter(
        1, indices,
        torch::full_like(indices, 0, s.options()).fill_(-std::numeric_limits<double>::infinity()));
    buckets = torch::cat({buckets, rest.logsumexp(1, /*keepdim=*/true) - lse}, 1);
  }
  BucketLogProbs out{.buckets = buckets, .labels = torch::empty({0}, logits.options())};
  if (labels.defined()) {
    out.labels = torch::log_softmax(logits, 1).gather(1, labels.unsqueeze(1)).squeeze(1);
  }
  return out;
}

struct Case {
  int64_t rows;
  int64_t vocab;
  int64_t k;
  double temperature;
  bool labels;
  bool duplicates;  // sampled targets pad rows with id 0
  double logit_scale;
  bool top_ids = false;  // the ids are each row's largest logits
};

// Values and the gradient of a random weighting of every output, against
// the reference, in float64 (tight) and float32.
void ExpectMatchesReference(const Case& c, torch::ScalarType dtype, double tolerance) {
  torch::manual_seed(11);
  const torch::Tensor base = torch::randn({c.rows, c.vocab}, torch::kDouble) * c.logit_scale;
  torch::Tensor indices = c.top_ids ? std::get<1>(base.topk(c.k, 1))
                                    : torch::rand({c.rows, c.vocab})
                                          .argsort(/*dim=*/1, /*descending=*/false)
                                          .slice(1, 0, c.k);
  if (c.duplicates && c.k >= 3) {
    indices.select(1, c.k - 1).zero_();
    indices.select(1, c.k - 2).zero_();
  }
  const torch::Tensor labels =
      c.labels ? torch::randint(c.vocab, {c.rows}, torch::kLong) : torch::Tensor();
  const int64_t width = c.k + (c.k < c.vocab ? 1 : 0);
  const torch::Tensor w_buckets = torch::randn({c.rows, width}, torch::kDouble);
  const torch::Tensor w_labels = torch::randn({c.rows}, torch::kDouble);

  auto run = [&](bool fused) {
    torch::Tensor z = base.to(dtype).clone().requires_grad_(true);
    const BucketLogProbs out =
        fused ? BucketLogSoftmax(z, indices, c.k < c.vocab, labels, c.temperature)
              : Reference(z, indices, labels, c.temperature);
    torch::Tensor objective = (out.buckets * w_buckets.to(dtype)).sum();
    if (c.labels) objective = objective + (out.labels * w_labels.to(dtype)).sum();
    objective.backward();
    return std::make_tuple(out.buckets.detach(), out.labels.detach(), z.grad());
  };
  const auto [buckets, label_lp, grad] = run(true);
  const auto [ref_buckets, ref_label_lp, ref_grad] = run(false);
  ASSERT_EQ(buckets.sizes(), ref_buckets.sizes());
  EXPECT_TRUE(torch::isfinite(buckets).all().item<bool>());
  EXPECT_LE((buckets - ref_buckets).abs().max().item<double>(), tolerance);
  if (c.labels) {
    EXPECT_LE((label_lp - ref_label_lp).abs().max().item<double>(), tolerance);
  }
  EXPECT_LE((grad - ref_grad).abs().max().item<double>(), tolerance);
}

TEST(BucketLogSoftmaxTest, MatchesTheAutogradDefinitionInValueAndGradient) {
  const Case cases[] = {
      {.rows = 37,
       .vocab = 50,
       .k = 8,
       .temperature = 1.0,
       .labels = true,
       .duplicates = false,
       .logit_scale = 3},
      {.rows = 37,
       .vocab = 50,
       .k = 8,
       .temperature = 2.5,
       .labels = false,
       .duplicates = false,
       .logit_scale = 3},
      {.rows = 20,
       .vocab = 64,
       .k = 16,
       .temperature = 1.0,
       .labels = true,
       .duplicates = true,
       .logit_scale = 2},
      {.rows = 20,
       .vocab = 30,
       .k = 30,
       .temperature = 1.0,
       .labels = true,
       .duplicates = false,
       .logit_scale = 1},  // k == V: no tail bucket
      {.rows = 9,
       .vocab = 40,
       .k = 0,
       .temperature = 0.5,
       .labels = false,
       .duplicates = false,
       .logit_scale = 1},  // no ids: the tail is everything
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "k=" << c.k << " V=" << c.vocab << " T=" << c.temperature
                                    << " duplicates=" << c.duplicates);
    ExpectMatchesReference(c, torch::kDouble, 1e-12);
    ExpectMatchesReference(c, torch::kFloat, 2e-5);
  }
}

TEST(BucketLogSoftmaxTest, TailsFarBelowFloatRangeStayFiniteAndExact) {
  // Logits spread over hundreds: the tail outside the top ids is around
  // exp(-300), which float32 softmax flushes to zero; those rows take the
  // shifted logsumexp.
  const Case c{.rows = 16,
               .vocab = 32,
               .k = 4,
               .temperature = 1.0,
               .labels = true,
               .duplicates = false,
               .logit_scale = 150,
               .top_ids = true};
  ExpectMatchesReference(c, torch::kDouble, 1e-9);
  ExpectMatchesReference(c, torch::kFloat, 1e-3);
  const torch::Tensor z = torch::randn({16, 32}, torch::kFloat) * 150;
  const torch::Tensor ids = std::get<1>(z.topk(4, 1));
  const torch::Tensor tail =
      BucketLogSoftmax(z, ids, true, torch::Tensor(), 1.0).buckets.select(1, 4);
  EXPECT_LT(tail.max().item<float>(), -69.0f) << "every row's tail is below 1e-30";
}

TEST(BucketLogSoftmaxTest, RefusesLabelsAtAnotherTemperature) {
  const torch::Tensor z = torch::randn({2, 5});
  const torch::Tensor ids = torch::zeros({2, 1}, torch::kLong);
  EXPECT_THROW(BucketLogSoftmax(z, ids, true, torch::zeros({2}, torch::kLong), 2.0), c10::Error);
}

}  // namespace
}  // namespace retort::trainer
