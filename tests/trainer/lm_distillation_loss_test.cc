#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "teacher/wire_codec.h"
#include "trainer/classifier/distillation_loss.h"
#include "trainer/lm/lm_distillation_loss.h"

namespace retort::trainer {
namespace {

using teacher::TopKLogProbs;

constexpr Divergence kAllDivergences[] = {Divergence::kForwardKl, Divergence::kReverseKl,
                                          Divergence::kJensenShannon, Divergence::kSkewKl};
constexpr double kInf = std::numeric_limits<double>::infinity();

LmLossOptions Options(Divergence divergence, double temperature, double alpha, double skew = 0.1) {
  LmLossOptions options;
  options.divergence = divergence;
  options.temperature = temperature;
  options.alpha = alpha;
  options.skew = skew;
  return options;
}

// A dense answer in top-k form: k = V, each row's classes in a random order.
TopKLogProbs ShuffledDenseTopK(const torch::Tensor& log_probs) {
  TopKLogProbs out;
  out.indices =
      torch::argsort(torch::rand(log_probs.sizes()), /*dim=*/int64_t{1}, /*descending=*/false);
  out.values = log_probs.gather(1, out.indices);
  out.tail_log_mass = torch::full({log_probs.size(0)}, -kInf, log_probs.options());
  return out;
}

double Soft(const torch::Tensor& logits, const TopKLogProbs& teacher, const torch::Tensor& labels,
            const LmLossOptions& options) {
  return LmDistillationLoss(logits, &teacher, labels, options).soft.item<double>();
}

// ---- Independent reference: plain loops in double. ----

struct RefRow {
  std::vector<double> logits;  // student, V entries
  std::vector<int64_t> indices;
  std::vector<double> p;  // teacher's top-k probabilities
  double p_tail;          // teacher's tail mass (0 allowed)
  int64_t label;
};

// Student buckets: q at temperature T on the k indices, then everything else.
std::vector<double> RefStudentBuckets(const RefRow& row, double t) {
  double z = 0;
  for (double v : row.logits) z += std::exp(v / t);
  std::vector<double> q;
  std::vector<bool> in_top(row.logits.size(), false);
  for (int64_t i : row.indices) {
    q.push_back(std::exp(row.logits[i] / t) / z);
    in_top[i] = true;
  }
  double tail = 0;
  for (size_t c = 0; c < row.logits.size(); ++c) {
    if (!in_top[c]) tail += std::exp(row.logits[c] / t) / z;
  }
  q.push_back(tail);
  return q;
}

double RefDivergence(const RefRow& row, double t, Divergence divergence, double skew) {
  std::vector<double> q = RefStudentBuckets(row, t);
  std::vector<double> p = row.p;
  p.push_back(row.p_tail);
  double d = 0;
  for (size_t b = 0; b < p.size(); ++b) {
    switch (divergence) {
      case Divergence::kForwardKl:
        if (p[b] > 0) d += p[b] * std::log(p[b] / q[b]);
        break;
      case Divergence::kReverseKl:
        // With p = 0 the clamp makes log p = kLmLogProbFloor.
        d += q[b] * (std::log(q[b]) - (p[b] > 0 ? std::log(p[b]) : kLmLogProbFloor));
        break;
      case Divergence::kJensenShannon: {
        const double m = 0.5 * (p[b] + q[b]);
        if (p[b] > 0) d += 0.5 * p[b] * std::log(p[b] / m);
        d += 0.5 * q[b] * std::log(q[b] / m);
        break;
      }
      case Divergence::kSkewKl:
        if (p[b] > 0) d += p[b] * std::log(p[b] / (skew * p[b] + (1 - skew) * q[b]));
        break;
    }
  }
  return d;
}

double RefCrossEntropy(const RefRow& row) {
  double z = 0;
  for (double v : row.logits) z += std::exp(v);
  return -std::log(std::exp(row.logits[row.label]) / z);
}

// The rows as tensors (float64).
void ToTensors(const std::vector<RefRow>& rows, torch::Tensor* logits, TopKLogProbs* teacher,
               torch::Tensor* labels) {
  const int64_t n = static_cast<int64_t>(rows.size());
  const int64_t v = static_cast<int64_t>(rows[0].logits.size());
  const int64_t k = static_cast<int64_t>(rows[0].indices.size());
  *logits = torch::empty({n, v}, torch::kDouble);
  teacher->indices = torch::empty({n, k}, torch::kLong);
  teacher->values = torch::empty({n, k}, torch::kDouble);
  teacher->tail_log_mass = torch::empty({n}, torch::kDouble);
  *labels = torch::empty({n}, torch::kLong);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < v; ++c) (*logits)[r][c] = rows[r].logits[c];
    for (int64_t i = 0; i < k; ++i) {
      teacher->indices[r][i] = rows[r].indices[i];
      teacher->values[r][i] = std::log(rows[r].p[i]);
    }
    teacher->tail_log_mass[r] = std::log(rows[r].p_tail);  // -inf for 0
    (*labels)[r] = rows[r].label;
  }
}

const std::vector<RefRow>& HandRows() {
  static const auto* rows = new std::vector<RefRow>{
      {{0.5, -1.0, 2.0, 0.3, -0.7}, {3, 0}, {0.4, 0.3}, 0.3, 2},
      {{1.2, 0.1, -0.4, -2.0, 0.9}, {1, 4}, {0.6, 0.25}, 0.15, 4},
  };
  return *rows;
}

// ---- Tests ----

TEST(LmDistillationLossTest, DenseForwardKlIsTheOrdinaryKl) {
  const double t = 2.5;
  torch::Tensor student = torch::randn({4, 9}, torch::kDouble);
  torch::Tensor teacher_log_p = torch::log_softmax(torch::randn({4, 9}, torch::kDouble) / t, 1);
  TopKLogProbs teacher = ShuffledDenseTopK(teacher_log_p);
  torch::Tensor labels = torch::randint(0, 9, {4}, torch::kLong);
  const double soft = Soft(student, teacher, labels, Options(Divergence::kForwardKl, t, 0.5));

  torch::Tensor student_log_q = torch::log_softmax(student / t, 1);
  const double torch_kl =
      torch::kl_div(student_log_q, teacher_log_p, at::Reduction::Sum, /*log_target=*/true)
          .item<double>() /
      4;
  EXPECT_NEAR(soft, torch_kl, 1e-12);
  EXPECT_NEAR(soft, KlDivergence(teacher_log_p, student_log_q).item<double>(), 1e-12);
  EXPECT_GT(soft, 0.0);
}

TEST(LmDistillationLossTest, MatchesHandComputedTopKWithTail) {
  torch::Tensor logits, labels;
  TopKLogProbs teacher;
  ToTensors(HandRows(), &logits, &teacher, &labels);
  const double t = 2.0, alpha = 0.3, skew = 0.25;
  double ce = 0;
  for (const RefRow& row : HandRows()) ce += RefCrossEntropy(row) / 2;
  for (Divergence d : kAllDivergences) {
    double expected = 0;
    for (const RefRow& row : HandRows()) expected += RefDivergence(row, t, d, skew) / 2;
    LmLossTerms terms = LmDistillationLoss(logits, &teacher, labels, Options(d, t, alpha, skew));
    EXPECT_NEAR(terms.soft.item<double>(), expected, 1e-12) << DivergenceName(d);
    EXPECT_NEAR(terms.hard.item<double>(), ce, 1e-12);
    EXPECT_NEAR(terms.total.item<double>(), alpha * t * t * expected + (1 - alpha) * ce, 1e-12)
        << DivergenceName(d);
    EXPECT_EQ(terms.tokens, 2);
    EXPECT_GT(expected, 1e-3) << DivergenceName(d);  // a case where the terms matter
  }
}

TEST(LmDistillationLossTest, ZeroTeacherMassIsFiniteAndContributesNothing) {
  // The teacher puts all its mass on its top 2 (tail -inf), and one of them
  // has probability 0 too (value -inf).
  std::vector<RefRow> rows = {{{0.5, -1.0, 2.0, 0.3, -0.7}, {3, 0}, {1.0, 0.0}, 0.0, 2}};
  torch::Tensor logits, labels;
  TopKLogProbs teacher;
  ToTensors(rows, &logits, &teacher, &labels);
  ASSERT_TRUE(std::isinf(teacher.values[0][1].item<double>()));
  ASSERT_TRUE(std::isinf(teacher.tail_log_mass[0].item<double>()));
  for (Divergence d : kAllDivergences) {
    torch::Tensor z = logits.clone().requires_grad_();
    LmLossTerms terms = LmDistillationLoss(z, &teacher, labels, Options(d, 1.5, 1.0, 0.2));
    const double expected = RefDivergence(rows[0], 1.5, d, 0.2);
    EXPECT_NEAR(terms.soft.item<double>(), expected, 1e-12 * std::max(1.0, std::abs(expected)))
        << DivergenceName(d);
    terms.total.backward();
    EXPECT_TRUE(torch::isfinite(z.grad()).all().item<bool>()) << DivergenceName(d);
  }
}

TEST(LmDistillationLossTest, JensenShannonIsSymmetricForFullSupport) {
  const double t = 2.0;
  torch::Tensor a = torch::randn({3, 7}, torch::kDouble) * 2;
  torch::Tensor b = torch::randn({3, 7}, torch::kDouble) * 2;
  torch::Tensor labels = torch::zeros({3}, torch::kLong);
  LmLossOptions options = Options(Divergence::kJensenShannon, t, 0.5);
  const double ab = Soft(b, ShuffledDenseTopK(torch::log_softmax(a / t, 1)), labels, options);
  const double ba = Soft(a, ShuffledDenseTopK(torch::log_softmax(b / t, 1)), labels, options);
  EXPECT_NEAR(ab, ba, 1e-12);
  EXPECT_GT(ab, 0.0);
  EXPECT_LT(ab, std::log(2.0));
}

TEST(LmDistillationLossTest, SkewZeroIsForwardKl) {
  torch::Tensor logits = torch::randn({5, 11}, torch::kDouble);
  TopKLogProbs teacher =
      teacher::TopK(torch::log_softmax(torch::randn({5, 11}, torch::kDouble), 1), 4);
  torch::Tensor labels = torch::randint(0, 11, {5}, torch::kLong);
  const double fkl = Soft(logits, teacher, labels, Options(Divergence::kForwardKl, 1.7, 0.5));
  const double skew0 = Soft(logits, teacher, labels, Options(Divergence::kSkewKl, 1.7, 0.5, 0.0));
  EXPECT_NEAR(skew0, fkl, 1e-14);
  // Small skew is close to forward KL, and skew only lowers it.
  const double skew_small =
      Soft(logits, teacher, labels, Options(Divergence::kSkewKl, 1.7, 0.5, 1e-6));
  EXPECT_NEAR(skew_small, fkl, 1e-4);
  EXPECT_LT(Soft(logits, teacher, labels, Options(Divergence::kSkewKl, 1.7, 0.5, 0.5)), fkl);
}

TEST(LmDistillationLossTest, StudentEqualToTeacherGivesZeroAndDivergencesAreNonNegative) {
  const double t = 1.3;
  torch::Tensor logits = torch::randn({6, 10}, torch::kDouble) * 3;
  torch::Tensor labels = torch::randint(0, 10, {6}, torch::kLong);
  torch::Tensor teacher_log_p = torch::log_softmax(logits / t, 1);
  for (Divergence d : kAllDivergences) {
    // Dense, and top-k (equal on every bucket too).
    EXPECT_NEAR(Soft(logits, ShuffledDenseTopK(teacher_log_p), labels, Options(d, t, 0.5)), 0.0,
                1e-12)
        << DivergenceName(d);
    EXPECT_NEAR(Soft(logits, teacher::TopK(teacher_log_p, 3), labels, Options(d, t, 0.5)), 0.0,
                1e-12)
        << DivergenceName(d);
  }
  // Different distributions: every divergence positive; JS at most log 2;
  // and collapsing onto k + 1 buckets never raises a divergence above the
  // dense one (a coarsening).
  torch::Tensor other = torch::log_softmax(torch::randn({6, 10}, torch::kDouble), 1);
  for (Divergence d : kAllDivergences) {
    const double dense = Soft(logits, ShuffledDenseTopK(other), labels, Options(d, t, 0.5));
    const double top3 = Soft(logits, teacher::TopK(other, 3), labels, Options(d, t, 0.5));
    EXPECT_GT(top3, 0.0) << DivergenceName(d);
    EXPECT_LE(top3, dense + 1e-12) << DivergenceName(d);
    if (d == Divergence::kJensenShannon) {
      EXPECT_LE(dense, std::log(2.0));
    }
  }
}

TEST(LmDistillationLossTest, MaskedPositionsChangeNothing) {
  const int64_t v = 6;
  torch::Tensor logits = torch::randn({3, v}, torch::kDouble);
  torch::Tensor labels = torch::tensor({1, 5, 0}, torch::kLong);
  TopKLogProbs teacher =
      teacher::TopK(torch::log_softmax(torch::randn({3, v}, torch::kDouble), 1), 2);

  // The same rows with padding at 1 and 3; the teacher's padding rows hold
  // garbage (NaN, out-of-range indices) that must not be read.
  torch::Tensor padded_logits = torch::randn({5, v}, torch::kDouble) * 100;
  torch::Tensor rows = torch::tensor({0, 2, 4}, torch::kLong);
  padded_logits.index_copy_(0, rows, logits);
  for (int64_t ignore : {int64_t{-100}, int64_t{-1}}) {
    torch::Tensor padded_labels = torch::full({5}, ignore, torch::kLong);
    padded_labels.index_copy_(0, rows, labels);
    TopKLogProbs padded;
    padded.indices = torch::full({5, 2}, 1000, torch::kLong).index_copy_(0, rows, teacher.indices);
    padded.values = torch::full({5, 2}, NAN, torch::kDouble).index_copy_(0, rows, teacher.values);
    padded.tail_log_mass =
        torch::full({5}, NAN, torch::kDouble).index_copy_(0, rows, teacher.tail_log_mass);
    for (Divergence d : kAllDivergences) {
      LmLossOptions options = Options(d, 2.0, 0.6);
      options.ignore_index = ignore;
      torch::Tensor z = logits.clone().requires_grad_();
      torch::Tensor pz = padded_logits.clone().requires_grad_();
      LmLossTerms plain = LmDistillationLoss(z, &teacher, labels, options);
      LmLossTerms with_padding = LmDistillationLoss(pz, &padded, padded_labels, options);
      EXPECT_EQ(with_padding.tokens, 3);
      EXPECT_NEAR(with_padding.total.item<double>(), plain.total.item<double>(), 1e-14);
      EXPECT_NEAR(with_padding.soft.item<double>(), plain.soft.item<double>(), 1e-14);
      EXPECT_NEAR(with_padding.hard.item<double>(), plain.hard.item<double>(), 1e-14);
      plain.total.backward();
      with_padding.total.backward();
      EXPECT_TRUE(torch::allclose(pz.grad().index_select(0, rows), z.grad(), 0, 1e-14));
      EXPECT_EQ(pz.grad()[1].abs().sum().item<double>(), 0.0);
      EXPECT_EQ(pz.grad()[3].abs().sum().item<double>(), 0.0);
    }
  }
}

TEST(LmDistillationLossTest, AllMaskedIsZeroNotNan) {
  torch::Tensor z = torch::randn({2, 3, 5}).requires_grad_();
  torch::Tensor labels = torch::full({2, 3}, -100, torch::kLong);
  TopKLogProbs teacher = teacher::TopK(torch::log_softmax(torch::randn({6, 5}), 1), 2);
  LmLossTerms terms =
      LmDistillationLoss(z, &teacher, labels, Options(Divergence::kJensenShannon, 2, 0.5));
  EXPECT_EQ(terms.tokens, 0);
  EXPECT_EQ(terms.total.item<float>(), 0.0f);
  EXPECT_EQ(terms.soft.item<float>(), 0.0f);
  EXPECT_EQ(terms.hard.item<float>(), 0.0f);
  terms.total.backward();  // still connected to the logits
  EXPECT_EQ(z.grad().abs().sum().item<float>(), 0.0f);
}

TEST(LmDistillationLossTest, AlphaZeroIsCrossEntropyAndNeedsNoTeacher) {
  torch::Tensor logits = torch::randn({7, 12});
  torch::Tensor labels = torch::randint(0, 12, {7}, torch::kLong);
  labels[2] = -100;
  labels[5] = -100;
  LmLossTerms terms =
      LmDistillationLoss(logits, nullptr, labels, Options(Divergence::kReverseKl, 4.0, 0.0));
  EXPECT_FALSE(terms.soft.defined());
  EXPECT_EQ(terms.tokens, 5);
  // torch's cross-entropy, whose ignore_index default is also -100.
  EXPECT_NEAR(terms.total.item<float>(),
              torch::nn::functional::cross_entropy(logits, labels).item<float>(), 1e-5);
  EXPECT_EQ(terms.total.item<float>(), terms.hard.item<float>());
  // A teacher is required as soon as alpha > 0.
  EXPECT_THROW(LmDistillationLoss(logits, nullptr, labels, Options(Divergence::kForwardKl, 1, 0.1)),
               c10::Error);
}

TEST(LmDistillationLossTest, GradientsMatchFiniteDifferences) {
  const int64_t n = 3, v = 6;
  torch::Tensor base = torch::randn({n, v}, torch::kDouble);
  TopKLogProbs teacher =
      teacher::TopK(torch::log_softmax(torch::randn({n, v}, torch::kDouble) / 1.5, 1), 2);
  torch::Tensor labels = torch::tensor({4, -100, 0}, torch::kLong);
  for (Divergence d : kAllDivergences) {
    LmLossOptions options = Options(d, 1.5, 0.6, 0.3);
    torch::Tensor z = base.clone().requires_grad_();
    LmDistillationLoss(z, &teacher, labels, options).total.backward();
    torch::Tensor analytic = z.grad();
    const double eps = 1e-6;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < v; ++j) {
        torch::Tensor plus = base.clone(), minus = base.clone();
        plus[i][j] += eps;
        minus[i][j] -= eps;
        const double numeric =
            (LmDistillationLoss(plus, &teacher, labels, options).total.item<double>() -
             LmDistillationLoss(minus, &teacher, labels, options).total.item<double>()) /
            (2 * eps);
        EXPECT_NEAR(analytic[i][j].item<double>(), numeric, 1e-8)
            << DivergenceName(d) << " " << i << "," << j;
      }
    }
  }
}

TEST(LmDistillationLossTest, ExtremeLogitsStayFinite) {
  // Student logits at +-1e4 (float32 and bfloat16), teachers that agree and
  // that put their mass where the student has none.
  const int64_t n = 4, v = 8;
  torch::Tensor extreme = (torch::randn({n, v}) > 0).to(torch::kFloat) * 2e4 - 1e4;
  extreme[0] = -1e4;
  extreme[0][3] = 1e4;
  torch::Tensor labels = torch::tensor({0, 3, 7, 2}, torch::kLong);
  std::vector<TopKLogProbs> teachers = {
      teacher::TopK(torch::log_softmax(-extreme, 1), 3),
      teacher::TopK(torch::log_softmax(extreme, 1), 3),
      teacher::TopK(torch::log_softmax(torch::randn({n, v}), 1), 3),
      ShuffledDenseTopK(torch::log_softmax(-extreme / 2, 1).to(torch::kFloat)),
  };
  for (const TopKLogProbs& teacher : teachers) {
    for (torch::ScalarType dtype : {torch::kFloat, torch::kBFloat16}) {
      for (double t : {1.0, 3.0}) {
        for (Divergence d : kAllDivergences) {
          torch::Tensor z = extreme.to(dtype).clone().requires_grad_();
          LmLossTerms terms = LmDistillationLoss(z, &teacher, labels, Options(d, t, 0.5));
          EXPECT_EQ(terms.total.scalar_type(), torch::kFloat);
          EXPECT_TRUE(std::isfinite(terms.total.item<float>())) << DivergenceName(d) << " T=" << t;
          EXPECT_TRUE(std::isfinite(terms.soft.item<float>())) << DivergenceName(d);
          terms.total.backward();
          EXPECT_TRUE(torch::isfinite(z.grad()).all().item<bool>()) << DivergenceName(d);
        }
      }
    }
  }
}

TEST(LmDistillationLossTest, BatchTimeShapeEqualsFlatShape) {
  const int64_t b = 2, t = 3, v = 7;
  torch::Tensor logits = torch::randn({b, t, v});
  torch::Tensor labels = torch::randint(0, v, {b, t}, torch::kLong);
  labels[1][2] = -100;
  TopKLogProbs teacher = teacher::TopK(torch::log_softmax(torch::randn({b * t, v}), 1), 3);
  for (Divergence d : kAllDivergences) {
    torch::Tensor z3 = logits.clone().requires_grad_();
    torch::Tensor z2 = logits.reshape({b * t, v}).clone().requires_grad_();
    LmLossTerms three = LmDistillationLoss(z3, &teacher, labels, Options(d, 2.0, 0.5));
    LmLossTerms two = LmDistillationLoss(z2, &teacher, labels.reshape({-1}), Options(d, 2.0, 0.5));
    EXPECT_EQ(three.tokens, 5);
    EXPECT_TRUE(torch::equal(three.total, two.total)) << DivergenceName(d);
    EXPECT_TRUE(torch::equal(three.soft, two.soft)) << DivergenceName(d);
    three.total.backward();
    two.total.backward();
    EXPECT_TRUE(torch::equal(z3.grad().reshape({b * t, v}), z2.grad())) << DivergenceName(d);
  }
  // Mismatched labels or teacher rows are rejected.
  EXPECT_THROW(LmDistillationLoss(logits, &teacher, labels.reshape({-1}),
                                  Options(Divergence::kForwardKl, 1, 0.5)),
               c10::Error);
  TopKLogProbs short_teacher = teacher::TopK(torch::log_softmax(torch::randn({4, v}), 1), 3);
  EXPECT_THROW(
      LmDistillationLoss(logits, &short_teacher, labels, Options(Divergence::kForwardKl, 1, 0.5)),
      c10::Error);
}

TEST(LmDistillationLossTest, RepeatedIdsGiveTheLossAndGradientOfTheDistinctIds) {
  // Sampled targets pad rows with id 0 at -inf, and on-policy buckets join
  // two id lists: an id's mass is the sum over its copies, shared equally.
  torch::manual_seed(21);
  const torch::Tensor base = torch::randn({4, 9}, torch::kFloat64);
  const torch::Tensor teacher = torch::log_softmax(torch::randn({4, 9}, torch::kFloat64) * 2, 1);
  const torch::Tensor labels = torch::tensor({1, 0, 5, 8}, torch::kInt64);
  TopKLogProbs distinct;
  distinct.indices = torch::tensor({{0, 3, 4}, {2, 0, 7}, {8, 1, 0}, {5, 6, 0}}, torch::kInt64);
  distinct.values = teacher.gather(1, distinct.indices);
  distinct.tail_log_mass =
      (1 - distinct.values.exp().sum(1)).log();  // the rest of the teacher's mass
  TopKLogProbs repeated;
  // Each row repeats one id: twice with its mass on the first copy, once as
  // -inf padding, once with the mass on the second copy.
  repeated.indices = torch::cat({distinct.indices, distinct.indices.select(1, 0).unsqueeze(1),
                                 distinct.indices.select(1, 2).unsqueeze(1)},
                                1);
  repeated.values = torch::cat({distinct.values, torch::full({4, 2}, -kInf, torch::kFloat64)}, 1);
  repeated.values[3][2] = -kInf;
  repeated.values[3][4] = distinct.values[3][2];
  repeated.tail_log_mass = distinct.tail_log_mass;
  for (Divergence d : kAllDivergences) {
    for (double t : {1.0, 2.0}) {
      const LmLossOptions o = Options(d, t, 0.7);
      auto run = [&](const TopKLogProbs& targets) {
        torch::Tensor z = base.clone().requires_grad_(true);
        const LmLossTerms terms = LmDistillationLoss(z, &targets, labels, o);
        terms.total.backward();
        return std::make_pair(terms.total.item<double>(), z.grad());
      };
      const auto [want, want_grad] = run(distinct);
      const auto [got, got_grad] = run(repeated);
      EXPECT_NEAR(got, want, 1e-12) << DivergenceName(d) << " T=" << t;
      EXPECT_LE((got_grad - want_grad).abs().max().item<double>(), 1e-12) << DivergenceName(d);
    }
  }
}

TEST(LmDistillationLossTest, IdsCoveringTheVocabularyWithRepeatsLeaveAnEmptyTail) {
  torch::manual_seed(22);
  const torch::Tensor logits = torch::randn({3, 5}, torch::kFloat64).requires_grad_(true);
  const torch::Tensor teacher = torch::log_softmax(torch::randn({3, 5}, torch::kFloat64), 1);
  TopKLogProbs targets;
  targets.indices =
      torch::tensor({{0, 1, 2, 3, 4, 0}, {4, 3, 2, 1, 0, 2}, {1, 0, 3, 2, 4, 4}}, torch::kInt64);
  targets.values = teacher.gather(1, targets.indices);
  targets.values.select(1, 5).fill_(-kInf);
  targets.tail_log_mass = torch::full({3}, -kInf, torch::kFloat64);
  const torch::Tensor labels = torch::tensor({0, 1, 2}, torch::kInt64);
  const TopKLogProbs dense = ShuffledDenseTopK(teacher);
  for (Divergence d : kAllDivergences) {
    const LmLossOptions o = Options(d, 1.0, 1.0);
    const LmLossTerms terms = LmDistillationLoss(logits, &targets, labels, o);
    EXPECT_NEAR(terms.total.item<double>(), Soft(logits, dense, labels, o), 1e-9)
        << DivergenceName(d);
    const torch::Tensor grad = torch::autograd::grad({terms.total}, {logits})[0];
    EXPECT_TRUE(torch::isfinite(grad).all().item<bool>()) << DivergenceName(d);
  }
}

TEST(LmDistillationLossOptionsTest, Validates) {
  EXPECT_TRUE(LmLossOptions().Validate().ok());
  EXPECT_TRUE(Options(Divergence::kSkewKl, 2.0, 1.0, 0.0).Validate().ok());
  for (double t : {0.0, -1.0, kInf, double{NAN}}) {
    EXPECT_THAT(std::string(Options(Divergence::kForwardKl, t, 0.5).Validate().message()),
                ::testing::HasSubstr("--temperature"))
        << t;
  }
  for (double alpha : {-0.1, 1.1, double{NAN}}) {
    EXPECT_THAT(std::string(Options(Divergence::kForwardKl, 1, alpha).Validate().message()),
                ::testing::HasSubstr("--alpha"))
        << alpha;
  }
  for (double skew : {-0.1, 1.0, double{NAN}}) {
    EXPECT_THAT(std::string(Options(Divergence::kSkewKl, 1, 0.5, skew).Validate().message()),
                ::testing::HasSubstr("--skew"))
        << skew;
  }
  // LmDistillationLoss refuses invalid options.
  EXPECT_THROW(LmDistillationLoss(torch::zeros({1, 2}), nullptr, torch::zeros({1}, torch::kLong),
                                  Options(Divergence::kForwardKl, 0, 0)),
               c10::Error);
}

TEST(LmDistillationLossOptionsTest, ParsesDivergenceNames) {
  EXPECT_EQ(*ParseDivergence("fkl"), Divergence::kForwardKl);
  EXPECT_EQ(*ParseDivergence("forward_kl"), Divergence::kForwardKl);
  EXPECT_EQ(*ParseDivergence("rkl"), Divergence::kReverseKl);
  EXPECT_EQ(*ParseDivergence("reverse_kl"), Divergence::kReverseKl);
  EXPECT_EQ(*ParseDivergence("js"), Divergence::kJensenShannon);
  EXPECT_EQ(*ParseDivergence("skew_kl"), Divergence::kSkewKl);
  for (Divergence d : kAllDivergences) EXPECT_EQ(*ParseDivergence(DivergenceName(d)), d);
  absl::StatusOr<Divergence> bad = ParseDivergence("kl");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  for (const char* name : {"fkl", "forward_kl", "rkl", "reverse_kl", "js", "skew_kl"}) {
    EXPECT_THAT(std::string(bad.status().message()), ::testing::HasSubstr(name));
  }
}

}  // namespace
}  // namespace retort::trainer
