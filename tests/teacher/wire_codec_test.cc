#include "teacher/wire_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "teacher/request_validation.h"

namespace retort::teacher {
namespace {

using ::testing::HasSubstr;

constexpr float kInf = std::numeric_limits<float>::infinity();

torch::Tensor RoundTrip(const torch::Tensor& t, v1::DType dtype) {
  v1::Tensor wire;
  TensorToWire(t, dtype, &wire);
  EXPECT_EQ(wire.dtype(), dtype);
  EXPECT_EQ(static_cast<int64_t>(wire.data().size()), t.numel() * DTypeSize(dtype));
  absl::StatusOr<torch::Tensor> back = TensorFromWire(wire, "t");
  EXPECT_TRUE(back.ok()) << back.status();
  return back.ok() ? *back : torch::Tensor();
}

// Magnitudes spread over many binades, both signs, all normal numbers in
// the target format.
torch::Tensor WideRange(std::vector<int64_t> shape, double log_lo, double log_hi) {
  torch::Tensor mag = torch::exp(torch::rand(shape, torch::kFloat64) * (log_hi - log_lo) + log_lo);
  torch::Tensor sign = torch::where(torch::rand(shape) < 0.5, -1.0, 1.0).to(torch::kFloat64);
  return (mag * sign).to(torch::kFloat32);
}

// Largest |back - x| / |x|, in float64.
double MaxRelativeError(const torch::Tensor& x, const torch::Tensor& back) {
  torch::Tensor xd = x.to(torch::kFloat64);
  return ((back.to(torch::kFloat64) - xd).abs() / xd.abs()).max().item<double>();
}

TEST(WireCodecTest, Float32RoundTripIsExact) {
  torch::manual_seed(1);
  torch::Tensor x = torch::randn({3, 4, 5});
  x[0][0][0] = -0.0f;
  x[1][2][3] = std::numeric_limits<float>::denorm_min();
  torch::Tensor back = RoundTrip(x, v1::DTYPE_FLOAT32);
  EXPECT_EQ(back.sizes(), x.sizes());
  EXPECT_EQ(back.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(back, x));
}

TEST(WireCodecTest, Float32BytesAreLittleEndianRowMajor) {
  torch::Tensor x = torch::tensor({{1.0f, -2.0f}, {0.5f, 3.0f}});
  v1::Tensor wire;
  TensorToWire(x.t(), v1::DTYPE_FLOAT32, &wire);  // a non-contiguous view
  ASSERT_EQ(wire.data().size(), 16u);
  float values[4];
  std::memcpy(values, wire.data().data(), 16);
  EXPECT_EQ(values[0], 1.0f);
  EXPECT_EQ(values[1], 0.5f);
  EXPECT_EQ(values[2], -2.0f);
  EXPECT_EQ(values[3], 3.0f);
  // 1.0f is 0x3F800000: least significant byte first.
  EXPECT_EQ(static_cast<uint8_t>(wire.data()[0]), 0x00);
  EXPECT_EQ(static_cast<uint8_t>(wire.data()[3]), 0x3F);
}

TEST(WireCodecTest, Float16RoundTripIsWithinHalfAnUlp) {
  torch::manual_seed(2);
  // fp16 normals span [2^-14, 65504]; stay inside them.
  torch::Tensor x = WideRange({64, 33}, std::log(1e-4), std::log(6e4));
  torch::Tensor back = RoundTrip(x, v1::DTYPE_FLOAT16);
  EXPECT_EQ(back.scalar_type(), torch::kFloat32);
  // Round to nearest with an 11-bit significand: |error| <= 2^-11 |x|.
  EXPECT_LE(MaxRelativeError(x, back), std::ldexp(1.0, -11));
  // Values representable in fp16 come back exactly.
  torch::Tensor exact = torch::tensor({0.0f, 1.0f, -2.5f, 1024.0f, 65504.0f, 0.000061035156f});
  EXPECT_TRUE(torch::equal(RoundTrip(exact, v1::DTYPE_FLOAT16), exact));
}

TEST(WireCodecTest, BFloat16RoundTripIsWithinHalfAnUlp) {
  torch::manual_seed(3);
  torch::Tensor x = WideRange({64, 33}, -60.0, 60.0);
  torch::Tensor back = RoundTrip(x, v1::DTYPE_BFLOAT16);
  EXPECT_EQ(back.scalar_type(), torch::kFloat32);
  // Round to nearest with an 8-bit significand: |error| <= 2^-8 |x|.
  EXPECT_LE(MaxRelativeError(x, back), std::ldexp(1.0, -8));
  torch::Tensor exact = torch::tensor({0.0f, 1.0f, -3.0f, 1.5f, 256.0f, -kInf});
  EXPECT_TRUE(torch::equal(RoundTrip(exact, v1::DTYPE_BFLOAT16), exact));
}

TEST(WireCodecTest, Int32RoundTripIsExact) {
  torch::Tensor ids =
      torch::tensor({0, 1, -1, 999, 2147483647, -2147483647 - 1}, torch::kInt64).reshape({2, 3});
  torch::Tensor back = RoundTrip(ids, v1::DTYPE_INT32);
  EXPECT_EQ(back.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(back, ids));
}

TEST(WireCodecTest, Uint16RoundTripKeepsValuesUpTo65535) {
  torch::Tensor values =
      torch::tensor({0, 1, 255, 256, 32767, 32768, 40000, 65534, 65535}, torch::kInt64);
  torch::Tensor back = RoundTrip(values, v1::DTYPE_UINT16);
  EXPECT_EQ(back.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(back, values)) << back;
  // Two bytes each, least significant first.
  v1::Tensor wire;
  TensorToWire(torch::tensor({0x1234}, torch::kInt64), v1::DTYPE_UINT16, &wire);
  ASSERT_EQ(wire.data().size(), 2u);
  EXPECT_EQ(static_cast<uint8_t>(wire.data()[0]), 0x34);
  EXPECT_EQ(static_cast<uint8_t>(wire.data()[1]), 0x12);
}

TEST(WireCodecTest, TensorFromWireRejectsMalformedTensors) {
  v1::Tensor wire;
  TensorToWire(torch::ones({2, 3}), v1::DTYPE_FLOAT32, &wire);
  v1::Tensor short_data = wire;
  short_data.mutable_data()->pop_back();
  EXPECT_THAT(TensorFromWire(short_data, "x").status().message(), HasSubstr("holds 23 bytes"));
  v1::Tensor no_dtype = wire;
  no_dtype.set_dtype(v1::DTYPE_UNSPECIFIED);
  EXPECT_THAT(TensorFromWire(no_dtype, "x").status().message(), HasSubstr("unknown dtype"));
}

TEST(TopKTest, ValuesIndicesAndTailMassMatchDirectComputation) {
  torch::manual_seed(4);
  const int64_t rows = 8, classes = 50, k = 7;
  torch::Tensor lp = torch::log_softmax(torch::randn({rows, classes}) * 3, 1);
  TopKLogProbs top = TopK(lp, k);
  ASSERT_EQ(top.values.sizes(), (std::vector<int64_t>{rows, k}));
  ASSERT_EQ(top.indices.sizes(), (std::vector<int64_t>{rows, k}));
  ASSERT_EQ(top.tail_log_mass.sizes(), (std::vector<int64_t>{rows}));
  auto lp_a = lp.accessor<float, 2>();
  auto val_a = top.values.accessor<float, 2>();
  auto idx_a = top.indices.accessor<int64_t, 2>();
  auto tail_a = top.tail_log_mass.accessor<float, 1>();
  for (int64_t r = 0; r < rows; ++r) {
    std::set<int64_t> chosen;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t c = idx_a[r][j];
      ASSERT_GE(c, 0);
      ASSERT_LT(c, classes);
      EXPECT_TRUE(chosen.insert(c).second) << "row " << r << " repeats class " << c;
      EXPECT_EQ(val_a[r][j], lp_a[r][c]);
      if (j > 0) {
        EXPECT_GE(val_a[r][j - 1], val_a[r][j]) << "row " << r;
      }
    }
    double tail = 0;
    for (int64_t c = 0; c < classes; ++c) {
      if (chosen.count(c) != 0) continue;
      EXPECT_LE(lp_a[r][c], val_a[r][k - 1]) << "class " << c << " beats the top " << k;
      tail += std::exp(static_cast<double>(lp_a[r][c]));
    }
    EXPECT_NEAR(tail_a[r], std::log(tail), 1e-5) << "row " << r;
  }
}

// The fused selection against float64 arithmetic on hard rows: a tail of
// about e^-200 (its log kept to relative precision), ties (the earlier
// index first), -inf entries, a vocabulary that is no multiple of the
// vector width, k = 1, and torch's own top-k where there are no ties.
TEST(TopKTest, HardRowsMatchFloat64AndTiesGoToTheEarlierIndex) {
  torch::manual_seed(8);
  const int64_t classes = 4099;
  std::vector<torch::Tensor> rows;
  rows.push_back(torch::log_softmax(torch::randn({classes}) * 3, 0));
  rows.push_back(torch::log_softmax(torch::randn({classes}) * 60, 0));  // tail ~ e^-200
  torch::Tensor ties = torch::full({classes}, -9.0f);
  ties.index_put_({torch::indexing::Slice(100, 110)}, -1.0f);
  rows.push_back(torch::log_softmax(ties, 0));
  torch::Tensor with_inf = torch::log_softmax(torch::randn({classes}), 0);
  with_inf.index_put_({torch::indexing::Slice(7, 4000)}, -kInf);
  rows.push_back(with_inf);
  const torch::Tensor lp = torch::stack(rows);
  for (int64_t k : {1, 5, 32}) {
    const TopKLogProbs top = TopK(lp, k);
    const torch::Tensor lp64 = lp.to(torch::kFloat64);
    for (int64_t r = 0; r < lp.size(0); ++r) {
      const torch::Tensor mask =
          torch::ones({classes}, torch::kBool).scatter(0, top.indices[r], false);
      const double want = torch::logsumexp(lp64[r].masked_select(mask), 0).item<double>();
      const double got = top.tail_log_mass[r].item<float>();
      if (std::isinf(want)) {
        EXPECT_EQ(got, want) << "row " << r << " k " << k;
      } else {
        EXPECT_NEAR(got, want, 2e-5 * std::max(1.0, std::abs(want))) << "row " << r << " k " << k;
      }
      EXPECT_TRUE(torch::equal(top.values[r], lp[r].gather(0, top.indices[r])));
    }
    // Rows 0 and 1 have no ties: torch's top-k agrees exactly.
    const auto [values, indices] = lp.narrow(0, 0, 2).topk(k, 1, true, true);
    EXPECT_TRUE(torch::equal(top.indices.narrow(0, 0, 2), indices)) << "k " << k;
    EXPECT_TRUE(torch::equal(top.values.narrow(0, 0, 2), values)) << "k " << k;
    // Ties: the ten equal maxima in index order.
    for (int64_t j = 0; j < std::min<int64_t>(k, 10); ++j) {
      EXPECT_EQ(top.indices[2][j].item<int64_t>(), 100 + j);
    }
    if (k == 32) {  // then -9s by index
      EXPECT_EQ(top.indices[2][10].item<int64_t>(), 0);
      // Row 3: 7 + 99 finite entries; the top 32 are all finite.
      EXPECT_TRUE(torch::isfinite(top.values[3]).all().item<bool>());
    }
  }
  // Only -inf outside the top k: no tail.
  torch::Tensor few = torch::full({1, 40}, -kInf);
  few.index_put_({0, torch::indexing::Slice(0, 3)}, torch::log(torch::tensor({0.5f, 0.3f, 0.2f})));
  EXPECT_EQ(TopK(few, 3).tail_log_mass.item<float>(), -kInf);
  EXPECT_NEAR(TopK(few, 2).tail_log_mass.item<float>(), std::log(0.2), 1e-6);
}

TEST(TopKTest, KEqualToClassesLeavesNoTail) {
  torch::manual_seed(5);
  torch::Tensor lp = torch::log_softmax(torch::randn({4, 6}), 1);
  TopKLogProbs top = TopK(lp, 6);
  EXPECT_TRUE(torch::equal(top.tail_log_mass, torch::full({4}, -kInf)));
  EXPECT_TRUE(torch::equal(top.ToDense(6), lp));
}

TEST(TopKTest, ToDenseRowsSumToOneAndKeepTheTopKExactly) {
  torch::manual_seed(6);
  const int64_t rows = 16, classes = 100, k = 9;
  torch::Tensor lp = torch::log_softmax(torch::randn({rows, classes}) * 3, 1);
  TopKLogProbs top = TopK(lp, k);
  torch::Tensor dense = top.ToDense(classes);
  ASSERT_EQ(dense.sizes(), lp.sizes());
  torch::Tensor sums = dense.to(torch::kFloat64).exp().sum(1);
  EXPECT_TRUE(torch::allclose(sums, torch::ones({rows}, torch::kFloat64), 0, 1e-6)) << sums;
  EXPECT_TRUE(torch::equal(dense.gather(1, top.indices), lp.gather(1, top.indices)));
  // Every other class holds an equal share of the tail.
  torch::Tensor mask = torch::ones_like(lp, torch::kBool).scatter(1, top.indices, false);
  torch::Tensor expected_fill =
      (top.tail_log_mass.to(torch::kFloat64) - std::log(static_cast<double>(classes - k)))
          .unsqueeze(1)
          .expand({rows, classes});
  EXPECT_TRUE(torch::allclose(dense.to(torch::kFloat64).masked_select(mask),
                              expected_fill.masked_select(mask), 0, 1e-6));
}

// KL(p_t || p_s) = sum_c p_t (log p_t - log p_s), averaged over the batch.
torch::Tensor SoftLoss(const torch::Tensor& teacher_lp, const torch::Tensor& student_logits) {
  torch::Tensor student_lp = torch::log_softmax(student_logits, 1);
  return (teacher_lp.exp() * (teacher_lp - student_lp)).sum(1).mean();
}

// The teacher's dense log-probabilities after a trip through the wire.
torch::Tensor ThroughTheWire(const torch::Tensor& lp, const OutputSpec& spec) {
  AnswerAssembler assembler;
  std::optional<Answer> answer;
  for (const v1::DistillResponse& r : EncodeAnswer(1, {lp, {}}, spec, kDefaultMaxMessageBytes)) {
    absl::StatusOr<std::optional<Answer>> got = assembler.Add(r);
    EXPECT_TRUE(got.ok()) << got.status();
    if (got.ok() && got->has_value()) answer = std::move(**got);
  }
  EXPECT_TRUE(answer.has_value());
  return answer.has_value() ? answer->log_probs : torch::Tensor();
}

struct LossCase {
  int64_t classes;
  int32_t k;
  v1::DType value_dtype;
  double loss_bound;      // on |KL_topk - KL_dense| / KL_dense
  double gradient_bound;  // on |g_topk - g_dense| / |g_dense| (Frobenius)
};

// Measured with seed 7, 256 rows, teacher and student logits randn * 3
// (in parentheses: the largest over seeds 7..26):
//   classes  k   values  loss rel. diff       gradient rel. diff
//   10       5   fp32    3.99e-3 (3.99e-3)    1.60e-2 (1.79e-2)
//   10       5   bf16    3.99e-3 (3.99e-3)    1.60e-2 (1.79e-2)
//   1000     64  fp32    1.66e-2 (1.74e-2)    1.39e-2 (1.56e-2)
//   1000     64  bf16    1.65e-2 (1.74e-2)    1.41e-2 (1.57e-2)
// The bounds leave 2.2x to 2.5x margin over the worst seed. bf16 values add
// almost nothing: the error is the tail spread evenly, not the rounding.
TEST(WireCodecLossTest, TopKTeacherGivesNearlyTheSameSoftLossAndGradient) {
  const LossCase cases[] = {
      {10, 5, v1::DTYPE_FLOAT32, 1e-2, 4e-2},
      {10, 5, v1::DTYPE_BFLOAT16, 1e-2, 4e-2},
      {1000, 64, v1::DTYPE_FLOAT32, 4e-2, 4e-2},
      {1000, 64, v1::DTYPE_BFLOAT16, 4e-2, 4e-2},
  };
  for (const LossCase& c : cases) {
    SCOPED_TRACE(::testing::Message()
                 << c.classes << " classes, top-" << c.k << " " << DTypeName(c.value_dtype));
    torch::manual_seed(7);
    const int64_t rows = 256;
    torch::Tensor teacher_lp = torch::log_softmax(torch::randn({rows, c.classes}) * 3, 1);
    torch::Tensor student_logits = (torch::randn({rows, c.classes}) * 3).requires_grad_(true);

    torch::Tensor dense_loss = SoftLoss(teacher_lp, student_logits);
    torch::Tensor dense_grad = torch::autograd::grad({dense_loss}, {student_logits})[0];

    OutputSpec spec{v1::OUTPUT_TOP_K, c.k, c.value_dtype};
    torch::Tensor decoded = ThroughTheWire(teacher_lp, spec);
    ASSERT_TRUE(decoded.defined());
    ASSERT_EQ(decoded.sizes(), teacher_lp.sizes());
    torch::Tensor topk_loss = SoftLoss(decoded, student_logits);
    torch::Tensor topk_grad = torch::autograd::grad({topk_loss}, {student_logits})[0];

    const double l_dense = dense_loss.item<double>(), l_topk = topk_loss.item<double>();
    const double loss_rel = std::abs(l_topk - l_dense) / l_dense;
    const double grad_rel = ((topk_grad - dense_grad).norm() / dense_grad.norm()).item<double>();
    RecordProperty(absl::StrCat("loss_rel_", c.classes, "_", DTypeName(c.value_dtype)),
                   std::to_string(loss_rel));
    RecordProperty(absl::StrCat("grad_rel_", c.classes, "_", DTypeName(c.value_dtype)),
                   std::to_string(grad_rel));
    EXPECT_LE(loss_rel, c.loss_bound) << "dense " << l_dense << " top-k " << l_topk;
    EXPECT_LE(grad_rel, c.gradient_bound);
  }
}

// Dense bf16 and fp16 values change the loss only by their rounding.
TEST(WireCodecLossTest, DenseHalfPrecisionValuesBarelyMoveTheSoftLoss) {
  torch::manual_seed(8);
  torch::Tensor teacher_lp = torch::log_softmax(torch::randn({256, 1000}) * 3, 1);
  torch::Tensor student_logits = torch::randn({256, 1000}) * 3;
  const double dense = SoftLoss(teacher_lp, student_logits).item<double>();
  for (v1::DType dtype : {v1::DTYPE_FLOAT32, v1::DTYPE_FLOAT16, v1::DTYPE_BFLOAT16}) {
    torch::Tensor decoded = ThroughTheWire(teacher_lp, {v1::OUTPUT_DENSE, 0, dtype});
    ASSERT_TRUE(decoded.defined());
    const double loss = SoftLoss(decoded, student_logits).item<double>();
    RecordProperty(absl::StrCat("dense_loss_rel_", DTypeName(dtype)),
                   std::to_string(std::abs(loss - dense) / dense));
    // Measured (seed 8): fp32 0, fp16 9e-6, bf16 3.8e-5 relative.
    EXPECT_NEAR(loss, dense, 2e-4 * dense) << DTypeName(dtype);
  }
}

Answer BigAnswer(int64_t positions, int64_t classes, bool with_hidden) {
  torch::manual_seed(9);
  Answer answer;
  answer.log_probs = torch::log_softmax(torch::randn({positions, classes}) * 3, 1);
  if (with_hidden) {
    answer.hidden["fc0"] = torch::randn({positions, 64});
    answer.hidden["conv"] = torch::randn({positions, 4, 3, 3});
  }
  return answer;
}

// Feeds every part to a fresh assembler; the answer comes with the last.
absl::StatusOr<Answer> Reassemble(const std::vector<v1::DistillResponse>& parts) {
  AnswerAssembler assembler;
  for (size_t i = 0; i < parts.size(); ++i) {
    absl::StatusOr<std::optional<Answer>> got = assembler.Add(parts[i]);
    if (!got.ok()) return got.status();
    if (got->has_value() != (i + 1 == parts.size())) {
      return absl::InternalError(absl::StrCat("part ", i, " of ", parts.size(),
                                              got->has_value() ? " finished" : " did not finish",
                                              " the answer"));
    }
    if (got->has_value()) return std::move(**got);
  }
  return absl::InternalError("no parts");
}

void ExpectBoundedParts(const std::vector<v1::DistillResponse>& parts, int64_t max_bytes) {
  for (size_t i = 0; i < parts.size(); ++i) {
    EXPECT_LE(static_cast<int64_t>(parts[i].ByteSizeLong()), max_bytes) << "part " << i;
    EXPECT_EQ(parts[i].part(), i);
    EXPECT_EQ(parts[i].part_count(), parts.size());
    EXPECT_EQ(parts[i].sequence(), 42u);
  }
}

constexpr int64_t kSmallMessage = 65536;

TEST(EncodeAnswerTest, SplitsDenseAnswersIntoBoundedPartsAndReassemblesThem) {
  Answer answer = BigAnswer(2000, 1000, /*with_hidden=*/false);
  std::vector<v1::DistillResponse> parts =
      EncodeAnswer(42, answer, {v1::OUTPUT_DENSE, 0, v1::DTYPE_FLOAT32}, kSmallMessage);
  // 8 MB of values cannot fit in fewer than 8e6 / 65536 = 123 messages.
  EXPECT_GE(parts.size(), 123u);
  ExpectBoundedParts(parts, kSmallMessage);
  absl::StatusOr<Answer> back = Reassemble(parts);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(torch::equal(back->log_probs, answer.log_probs));
  EXPECT_TRUE(back->hidden.empty());
}

TEST(EncodeAnswerTest, SampledAnswersTravelAsIdsAndCountsInPartsOfAnyWidth) {
  torch::manual_seed(4);
  Answer answer;
  answer.log_probs = torch::log_softmax(torch::randn({600, 500}) * 2.0, 1);
  std::vector<uint64_t> keys(20);
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = 100 + i;
  answer.sampled = SampleTargets(answer.log_probs, 24, keys);
  OutputSpec spec{v1::OUTPUT_SAMPLED, 0, v1::DTYPE_FLOAT32};
  spec.samples = 24;
  std::vector<v1::DistillResponse> parts = EncodeAnswer(7, answer, spec, 4096);
  EXPECT_GT(parts.size(), 10u);  // parts differ in their widest position
  for (bool keep : {true, false}) {
    AnswerAssembler assembler(keep);
    std::optional<Answer> back;
    for (const v1::DistillResponse& r : parts) {
      absl::StatusOr<std::optional<Answer>> added = assembler.Add(r);
      ASSERT_TRUE(added.ok()) << added.status();
      if (added->has_value()) back = **added;
    }
    ASSERT_TRUE(back.has_value());
    const torch::Tensor want = answer.sampled.ToTopK().ToDense(500);
    if (keep) {
      EXPECT_EQ(back->sampled.samples, 24);
      EXPECT_TRUE(torch::allclose(back->top_k.ToDense(500), want));
    } else {
      EXPECT_TRUE(torch::allclose(back->log_probs, want));
    }
  }
  // A part whose positions hold another number of draws is refused.
  v1::DistillResponse bad = parts[1];
  v1::Tensor* counts = bad.mutable_log_probs()->mutable_sample_counts();
  (*counts->mutable_data())[0] = static_cast<char>((*counts->mutable_data())[0] + 1);
  AnswerAssembler assembler(true);
  ASSERT_TRUE(assembler.Add(parts[0]).ok());
  EXPECT_EQ(assembler.Add(bad).status().code(), absl::StatusCode::kDataLoss);
}

TEST(EncodeAnswerTest, CarriesHiddenStatesWithTheirPositions) {
  Answer answer = BigAnswer(2000, 1000, /*with_hidden=*/true);
  std::vector<v1::DistillResponse> parts =
      EncodeAnswer(42, answer, {v1::OUTPUT_DENSE, 0, v1::DTYPE_FLOAT32}, kSmallMessage);
  EXPECT_GT(parts.size(), 123u);
  ExpectBoundedParts(parts, kSmallMessage);
  absl::StatusOr<Answer> back = Reassemble(parts);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(torch::equal(back->log_probs, answer.log_probs));
  ASSERT_EQ(back->hidden.size(), 2u);
  EXPECT_TRUE(torch::equal(back->hidden.at("fc0"), answer.hidden.at("fc0")));
  EXPECT_TRUE(torch::equal(back->hidden.at("conv"), answer.hidden.at("conv")));
}

TEST(EncodeAnswerTest, Bfloat16DenseValuesAreRounded) {
  Answer answer = BigAnswer(300, 1000, /*with_hidden=*/true);
  std::vector<v1::DistillResponse> parts =
      EncodeAnswer(42, answer, {v1::OUTPUT_DENSE, 0, v1::DTYPE_BFLOAT16}, kSmallMessage);
  ExpectBoundedParts(parts, kSmallMessage);
  absl::StatusOr<Answer> back = Reassemble(parts);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(
      torch::equal(back->log_probs, answer.log_probs.to(torch::kBFloat16).to(torch::kFloat32)));
  EXPECT_TRUE(torch::equal(back->hidden.at("fc0"),
                           answer.hidden.at("fc0").to(torch::kBFloat16).to(torch::kFloat32)));
}

TEST(EncodeAnswerTest, TopKAnswersSplitAndDecodeToTheSpreadDistribution) {
  Answer answer = BigAnswer(2000, 1000, /*with_hidden=*/true);
  const int32_t k = 64;
  std::vector<v1::DistillResponse> parts =
      EncodeAnswer(42, answer, {v1::OUTPUT_TOP_K, k, v1::DTYPE_BFLOAT16}, kSmallMessage);
  EXPECT_GT(parts.size(), 1u);
  ExpectBoundedParts(parts, kSmallMessage);
  for (const v1::DistillResponse& r : parts) {
    EXPECT_FALSE(r.log_probs().has_dense());
    EXPECT_EQ(r.log_probs().top_k_indices().dtype(), v1::DTYPE_UINT16);
  }
  absl::StatusOr<Answer> back = Reassemble(parts);
  ASSERT_TRUE(back.ok()) << back.status();
  TopKLogProbs expected = TopK(answer.log_probs, k);
  expected.values = expected.values.to(torch::kBFloat16).to(torch::kFloat32);
  EXPECT_TRUE(torch::allclose(back->log_probs, expected.ToDense(1000), 0, 1e-6));
  EXPECT_TRUE(torch::equal(back->hidden.at("fc0"),
                           answer.hidden.at("fc0").to(torch::kBFloat16).to(torch::kFloat32)));
}

TEST(EncodeAnswerTest, SmallAnswersTakeOneMessage) {
  Answer answer = BigAnswer(3, 10, /*with_hidden=*/false);
  std::vector<v1::DistillResponse> parts =
      EncodeAnswer(42, answer, {v1::OUTPUT_DENSE, 0, v1::DTYPE_FLOAT32}, kDefaultMaxMessageBytes);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].num_classes(), 10);
  EXPECT_EQ(parts[0].log_probs().positions(), 3);
  absl::StatusOr<Answer> back = Reassemble(parts);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(torch::equal(back->log_probs, answer.log_probs));
}

TEST(AnswerAssemblerTest, RefusesPartsOutOfOrder) {
  Answer answer = BigAnswer(100, 1000, /*with_hidden=*/false);
  std::vector<v1::DistillResponse> parts =
      EncodeAnswer(42, answer, {v1::OUTPUT_DENSE, 0, v1::DTYPE_FLOAT32}, kSmallMessage);
  ASSERT_GE(parts.size(), 3u);
  {
    AnswerAssembler assembler;
    absl::Status status = assembler.Add(parts[1]).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
    EXPECT_THAT(status.message(), HasSubstr("part 1"));
  }
  {
    AnswerAssembler assembler;
    ASSERT_TRUE(assembler.Add(parts[0]).ok());
    absl::Status status = assembler.Add(parts[2]).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  }
  {
    // The right part number at the wrong position.
    AnswerAssembler assembler;
    ASSERT_TRUE(assembler.Add(parts[0]).ok());
    v1::DistillResponse shifted = parts[1];
    shifted.mutable_log_probs()->set_position_offset(shifted.log_probs().position_offset() + 1);
    EXPECT_EQ(assembler.Add(shifted).status().code(), absl::StatusCode::kDataLoss);
  }
}

TEST(AnswerAssemblerTest, AnErrorResponseReturnsItsStatus) {
  v1::DistillResponse error;
  error.set_sequence(3);
  error.set_error_code(static_cast<int32_t>(absl::StatusCode::kResourceExhausted));
  error.set_error_message("the teacher's queue is full");
  AnswerAssembler assembler;
  absl::Status status = assembler.Add(error).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(), "the teacher's queue is full");
}

TEST(AnswerAssemblerTest, TopKIndicesOutOfRangeAreDataLoss) {
  Answer answer = BigAnswer(4, 10, /*with_hidden=*/false);
  std::vector<v1::DistillResponse> parts =
      EncodeAnswer(42, answer, {v1::OUTPUT_TOP_K, 3, v1::DTYPE_FLOAT32}, kDefaultMaxMessageBytes);
  ASSERT_EQ(parts.size(), 1u);
  {
    // Class 10 of 10 (uint16 indices).
    v1::DistillResponse bad = parts[0];
    std::string* idx = bad.mutable_log_probs()->mutable_top_k_indices()->mutable_data();
    (*idx)[0] = 10;
    (*idx)[1] = 0;
    absl::Status status = AnswerAssembler().Add(bad).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
    EXPECT_THAT(status.message(), HasSubstr("outside [0, 10)"));
  }
  {
    // A negative class (int32 indices).
    v1::DistillResponse bad = parts[0];
    TensorToWire(torch::full({4, 3}, -1, torch::kInt64), v1::DTYPE_INT32,
                 bad.mutable_log_probs()->mutable_top_k_indices());
    absl::Status status = AnswerAssembler().Add(bad).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  }
  {
    // More top-k entries than classes.
    v1::DistillResponse bad = parts[0];
    bad.set_num_classes(2);
    EXPECT_EQ(AnswerAssembler().Add(bad).status().code(), absl::StatusCode::kDataLoss);
  }
  // The unmodified part decodes.
  EXPECT_TRUE(AnswerAssembler().Add(parts[0]).ok());
}

TEST(AnswerAssemblerTest, HiddenStatesMissingFromAPartAreDataLoss) {
  Answer answer = BigAnswer(100, 1000, /*with_hidden=*/true);
  std::vector<v1::DistillResponse> parts =
      EncodeAnswer(42, answer, {v1::OUTPUT_DENSE, 0, v1::DTYPE_FLOAT32}, kSmallMessage);
  ASSERT_GE(parts.size(), 2u);
  parts[1].clear_hidden();
  absl::Status status = Reassemble(parts).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr("positions of 100"));
}

TEST(AnswerAssemblerTest, DenseValuesOfTheWrongShapeAreDataLoss) {
  Answer answer = BigAnswer(4, 10, /*with_hidden=*/false);
  std::vector<v1::DistillResponse> parts =
      EncodeAnswer(42, answer, {v1::OUTPUT_DENSE, 0, v1::DTYPE_FLOAT32}, kDefaultMaxMessageBytes);
  ASSERT_EQ(parts.size(), 1u);
  v1::DistillResponse bad = parts[0];
  bad.set_num_classes(11);
  EXPECT_EQ(AnswerAssembler().Add(bad).status().code(), absl::StatusCode::kDataLoss);
  bad = parts[0];
  bad.mutable_log_probs()->set_positions(5);
  EXPECT_EQ(AnswerAssembler().Add(bad).status().code(), absl::StatusCode::kDataLoss);
}

TEST(EncodeRequestTest, SplitsBigInputsAndReassemblesThemByteForByte) {
  torch::manual_seed(10);
  torch::Tensor inputs = torch::randn({300, 1, 28, 28});
  const OutputSpec spec{v1::OUTPUT_TOP_K, 5, v1::DTYPE_BFLOAT16};
  std::vector<v1::DistillRequest> parts =
      EncodeRequest(77, inputs, 4.0, spec, {"fc0"}, torch::Tensor(), kSmallMessage);
  // 940800 bytes of inputs need at least 15 messages of 64 KiB.
  ASSERT_GE(parts.size(), 15u);
  for (size_t i = 0; i < parts.size(); ++i) {
    EXPECT_LE(static_cast<int64_t>(parts[i].ByteSizeLong()), kSmallMessage) << "part " << i;
    EXPECT_EQ(parts[i].sequence(), 77u);
    EXPECT_EQ(parts[i].part(), i);
  }
  EXPECT_EQ(parts[0].part_count(), parts.size());
  std::vector<v1::DistillRequest> whole =
      EncodeRequest(77, inputs, 4.0, spec, {"fc0"}, torch::Tensor(), kDefaultMaxMessageBytes * 4);
  ASSERT_EQ(whole.size(), 1u);

  RequestAssembler assembler(/*max_request_bytes=*/int64_t{1} << 24, /*max_pending=*/4);
  std::optional<v1::DistillRequest> joined;
  for (size_t i = 0; i < parts.size(); ++i) {
    absl::StatusOr<std::optional<v1::DistillRequest>> got = assembler.Add(parts[i]);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->has_value(), i + 1 == parts.size()) << "part " << i;
    if (got->has_value()) joined = std::move(**got);
  }
  ASSERT_TRUE(joined.has_value());
  EXPECT_EQ(assembler.pending(), 0);
  // Compared without EXPECT_EQ, whose failure would print megabytes.
  EXPECT_TRUE(joined->SerializeAsString() == whole[0].SerializeAsString());
  EXPECT_TRUE(joined->inputs().data() == whole[0].inputs().data());
  EXPECT_EQ(joined->temperature(), 4.0);
  EXPECT_EQ(joined->output(), v1::OUTPUT_TOP_K);
  EXPECT_EQ(joined->top_k(), 5);
  EXPECT_EQ(joined->value_dtype(), v1::DTYPE_BFLOAT16);
  ASSERT_EQ(joined->hidden_layers_size(), 1);
  absl::StatusOr<torch::Tensor> back = RequestInputs(*joined);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(torch::equal(*back, inputs));
}

TEST(EncodeRequestTest, TokenIdsTravelAsInt32) {
  torch::manual_seed(11);
  torch::Tensor ids = torch::randint(0, 50000, {100, 700}, torch::kInt64);
  std::vector<v1::DistillRequest> parts =
      EncodeRequest(5, ids, 1.0, {}, {}, torch::Tensor(), kSmallMessage);
  ASSERT_GT(parts.size(), 1u);
  EXPECT_EQ(parts[0].inputs().dtype(), v1::DTYPE_INT32);
  EXPECT_EQ(parts[0].top_k(), 0);
  RequestAssembler assembler(int64_t{1} << 24, 4);
  std::optional<v1::DistillRequest> joined;
  for (const v1::DistillRequest& p : parts) {
    absl::StatusOr<std::optional<v1::DistillRequest>> got = assembler.Add(p);
    ASSERT_TRUE(got.ok()) << got.status();
    if (got->has_value()) joined = std::move(**got);
  }
  ASSERT_TRUE(joined.has_value());
  absl::StatusOr<torch::Tensor> back = RequestInputs(*joined);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(*back, ids));
}

TEST(EncodeRequestTest, SmallRequestsTakeOnePart) {
  torch::Tensor inputs = torch::randn({2, 1, 28, 28});
  std::vector<v1::DistillRequest> parts =
      EncodeRequest(9, inputs, 2.0, {}, {}, torch::Tensor(), kDefaultMaxMessageBytes);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].part_count(), 1u);
  EXPECT_EQ(parts[0].output(), v1::OUTPUT_DENSE);
  EXPECT_EQ(parts[0].value_dtype(), v1::DTYPE_FLOAT32);
  EXPECT_EQ(
      std::vector<int64_t>(parts[0].inputs().shape().begin(), parts[0].inputs().shape().end()),
      (std::vector<int64_t>{2, 1, 28, 28}));
  absl::StatusOr<torch::Tensor> back = RequestInputs(parts[0]);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(torch::equal(*back, inputs));
}

TEST(OutputSpecTest, ParsesFlagValues) {
  absl::StatusOr<OutputSpec> dense = OutputSpec::Parse("dense", 0, "fp32");
  ASSERT_TRUE(dense.ok()) << dense.status();
  EXPECT_EQ(dense->kind, v1::OUTPUT_DENSE);
  EXPECT_EQ(dense->top_k, 0);
  EXPECT_EQ(dense->value_dtype, v1::DTYPE_FLOAT32);
  EXPECT_EQ(dense->Describe(), "dense fp32");

  absl::StatusOr<OutputSpec> topk = OutputSpec::Parse("topk", 5, "bf16");
  ASSERT_TRUE(topk.ok()) << topk.status();
  EXPECT_EQ(topk->kind, v1::OUTPUT_TOP_K);
  EXPECT_EQ(topk->top_k, 5);
  EXPECT_EQ(topk->value_dtype, v1::DTYPE_BFLOAT16);
  EXPECT_EQ(topk->Describe(), "top-5 bf16");

  absl::StatusOr<OutputSpec> fp16 = OutputSpec::Parse("dense", 7, "fp16");
  ASSERT_TRUE(fp16.ok()) << fp16.status();
  EXPECT_EQ(fp16->top_k, 0);  // k only matters for top-k
  EXPECT_EQ(fp16->value_dtype, v1::DTYPE_FLOAT16);
  EXPECT_EQ(fp16->Describe(), "dense fp16");
}

TEST(OutputSpecTest, RefusesBadFlagValuesNamingTheFlag) {
  struct Bad {
    std::string kind;
    int32_t k;
    std::string dtype;
    std::string flag;
  };
  for (const Bad& bad : std::vector<Bad>{{"sparse", 5, "fp32", "--teacher_output"},
                                         {"", 0, "fp32", "--teacher_output"},
                                         {"topk", 0, "fp32", "--teacher_top_k"},
                                         {"topk", -3, "bf16", "--teacher_top_k"},
                                         {"dense", 0, "fp64", "--teacher_value_dtype"},
                                         {"topk", 5, "BF16", "--teacher_value_dtype"}}) {
    absl::Status status = OutputSpec::Parse(bad.kind, bad.k, bad.dtype).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad.kind << " " << bad.dtype;
    EXPECT_THAT(status.message(), HasSubstr(bad.flag));
  }
}

TEST(TorchDTypeTest, MapsWireTypes) {
  EXPECT_EQ(*TorchDType(v1::DTYPE_FLOAT32), torch::kFloat32);
  EXPECT_EQ(*TorchDType(v1::DTYPE_BFLOAT16), torch::kBFloat16);
  EXPECT_EQ(*TorchDType(v1::DTYPE_INT64), torch::kInt64);
  EXPECT_EQ(TorchDType(v1::DTYPE_UNSPECIFIED).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace retort::teacher
