#include "teacher/request_validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace retort::teacher {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// An image classifier: float32 [1, 28, 28], 10 classes, two hidden layers.
v1::TeacherFingerprint ImageFingerprint() {
  v1::TeacherFingerprint fp;
  fp.set_architecture("mlp 784-16-8-10");
  for (int64_t d : {1, 28, 28}) fp.add_input_shape(d);
  fp.set_input_dtype(v1::DTYPE_FLOAT32);
  fp.set_num_classes(10);
  v1::HiddenLayerInfo* fc0 = fp.add_hidden_layers();
  fc0->set_name("fc0");
  fc0->add_shape(16);
  v1::HiddenLayerInfo* fc1 = fp.add_hidden_layers();
  fc1->set_name("fc1");
  fc1->add_shape(8);
  return fp;
}

// A token model: int32 ids of any length up to max_sequence_length, a
// vocabulary of 1000.
v1::TeacherFingerprint TokenFingerprint() {
  v1::TeacherFingerprint fp;
  fp.set_architecture("tokens");
  fp.add_input_shape(-1);
  fp.set_input_dtype(v1::DTYPE_INT32);
  fp.set_num_classes(1000);
  return fp;
}

v1::ServerLimits Limits() {
  v1::ServerLimits limits;
  limits.set_max_rows_per_request(64);
  limits.set_max_sequence_length(0);
  limits.set_min_temperature(0.05);
  limits.set_max_temperature(100);
  limits.set_max_top_k(64);
  limits.set_max_message_bytes(1 << 20);
  return limits;
}

v1::ServerLimits TokenLimits() {
  v1::ServerLimits limits = Limits();
  limits.set_max_sequence_length(64);
  return limits;
}

void SetFloats(const std::vector<float>& values, v1::Tensor* t) {
  t->set_data(std::string(reinterpret_cast<const char*>(values.data()), 4 * values.size()));
}

void SetInts(const std::vector<int32_t>& values, v1::Tensor* t) {
  t->set_data(std::string(reinterpret_cast<const char*>(values.data()), 4 * values.size()));
}

// A valid dense request of `rows` images whose pixels are 0.5.
v1::DistillRequest ImageRequest(int64_t rows) {
  v1::DistillRequest r;
  r.set_sequence(17);
  r.set_temperature(2.0);
  r.set_output(v1::OUTPUT_DENSE);
  r.set_value_dtype(v1::DTYPE_FLOAT32);
  v1::Tensor* in = r.mutable_inputs();
  in->set_dtype(v1::DTYPE_FLOAT32);
  for (int64_t d : {rows, int64_t{1}, int64_t{28}, int64_t{28}}) in->add_shape(d);
  SetFloats(std::vector<float>(static_cast<size_t>(rows * 784), 0.5f), in);
  return r;
}

// A valid top-k request of `rows` sequences of `length` token ids.
v1::DistillRequest TokenRequest(int64_t rows, int64_t length) {
  v1::DistillRequest r;
  r.set_sequence(23);
  r.set_temperature(1.0);
  r.set_output(v1::OUTPUT_TOP_K);
  r.set_top_k(20);
  r.set_value_dtype(v1::DTYPE_BFLOAT16);
  v1::Tensor* in = r.mutable_inputs();
  in->set_dtype(v1::DTYPE_INT32);
  in->add_shape(rows);
  in->add_shape(length);
  std::vector<int32_t> ids(static_cast<size_t>(rows * length));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 37) % 1000);
  SetInts(ids, in);
  return r;
}

absl::Status ValidateImage(const v1::DistillRequest& r) {
  return ValidateDistillRequest(r, ImageFingerprint(), Limits());
}

absl::Status ValidateTokens(const v1::DistillRequest& r) {
  return ValidateDistillRequest(r, TokenFingerprint(), TokenLimits());
}

// INVALID_ARGUMENT, prefixed with the request's sequence number, and
// containing every one of `parts`.
#define EXPECT_INVALID(status_expr, ...)                                                     \
  do {                                                                                       \
    const absl::Status status_ = (status_expr);                                              \
    EXPECT_EQ(status_.code(), absl::StatusCode::kInvalidArgument) << status_;                \
    EXPECT_THAT(std::string(status_.message()), AllOf(StartsWith("request "), __VA_ARGS__)); \
  } while (false)

TEST(ValidateDistillRequestTest, AcceptsValidRequests) {
  EXPECT_TRUE(ValidateImage(ImageRequest(1)).ok()) << ValidateImage(ImageRequest(1));
  EXPECT_TRUE(ValidateImage(ImageRequest(64)).ok());
  v1::DistillRequest with_everything = ImageRequest(3);
  with_everything.set_output(v1::OUTPUT_TOP_K);
  with_everything.set_top_k(10);
  with_everything.set_value_dtype(v1::DTYPE_FLOAT16);
  with_everything.add_hidden_layers("fc1");
  with_everything.add_hidden_layers("fc0");
  with_everything.set_temperature(100.0);
  EXPECT_TRUE(ValidateImage(with_everything).ok()) << ValidateImage(with_everything);
  EXPECT_TRUE(ValidateTokens(TokenRequest(2, 64)).ok()) << ValidateTokens(TokenRequest(2, 64));
  EXPECT_TRUE(ValidateTokens(TokenRequest(3, 1)).ok());
}

TEST(ValidateDistillRequestTest, WrongInputDtype) {
  v1::DistillRequest r = ImageRequest(2);
  r.mutable_inputs()->set_dtype(v1::DTYPE_INT32);
  EXPECT_INVALID(ValidateImage(r), HasSubstr("request 17: "), HasSubstr("inputs are int32"),
                 HasSubstr("takes float32"));
  v1::DistillRequest tokens = TokenRequest(2, 4);
  tokens.mutable_inputs()->set_dtype(v1::DTYPE_FLOAT32);
  EXPECT_INVALID(ValidateTokens(tokens), HasSubstr("inputs are float32"), HasSubstr("takes int32"));
}

TEST(ValidateDistillRequestTest, WrongInputShape) {
  v1::DistillRequest flat = ImageRequest(2);
  flat.mutable_inputs()->clear_shape();
  flat.mutable_inputs()->add_shape(2);
  flat.mutable_inputs()->add_shape(784);
  EXPECT_INVALID(ValidateImage(flat), HasSubstr("shape [2,784]"),
                 HasSubstr("expected [rows,1,28,28]"));
  v1::DistillRequest transposed = ImageRequest(2);
  transposed.mutable_inputs()->set_shape(1, 28);
  transposed.mutable_inputs()->set_shape(3, 1);
  EXPECT_INVALID(ValidateImage(transposed), HasSubstr("shape [2,28,28,1]"));
  v1::DistillRequest no_shape = ImageRequest(2);
  no_shape.mutable_inputs()->clear_shape();
  EXPECT_INVALID(ValidateImage(no_shape), HasSubstr("shape []"));
}

TEST(ValidateDistillRequestTest, RowsOutsideLimits) {
  v1::DistillRequest none = ImageRequest(0);
  EXPECT_INVALID(ValidateImage(none), HasSubstr("0 rows is not in [1, 64]"));
  v1::DistillRequest too_many = ImageRequest(65);
  EXPECT_INVALID(ValidateImage(too_many), HasSubstr("65 rows is not in [1, 64]"));
  v1::DistillRequest negative = ImageRequest(1);
  negative.mutable_inputs()->set_shape(0, -1);
  EXPECT_INVALID(ValidateImage(negative), HasSubstr("-1 rows"));
}

TEST(ValidateDistillRequestTest, DataLengthMismatch) {
  v1::DistillRequest short_data = ImageRequest(2);
  short_data.mutable_inputs()->mutable_data()->pop_back();
  EXPECT_INVALID(ValidateImage(short_data), HasSubstr("holds 6271 bytes"), HasSubstr("needs 6272"));
  v1::DistillRequest long_data = ImageRequest(2);
  long_data.mutable_inputs()->mutable_data()->append(4, '\0');
  EXPECT_INVALID(ValidateImage(long_data), HasSubstr("holds 6276 bytes"));
}

TEST(ValidateDistillRequestTest, NonFiniteInputsNameTheRow) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    v1::DistillRequest r = ImageRequest(3);
    std::vector<float> pixels(3 * 784, 0.5f);
    pixels[2 * 784 + 100] = bad;  // row 2, element 100
    SetFloats(pixels, r.mutable_inputs());
    EXPECT_INVALID(ValidateImage(r), HasSubstr("input row 2 element 100 is not finite"));
  }
}

TEST(ValidateDistillRequestTest, TemperatureOutOfRange) {
  for (double t : {std::nan(""), 0.0, -1.0, 0.04, 100.5, std::numeric_limits<double>::infinity()}) {
    v1::DistillRequest r = ImageRequest(1);
    r.set_temperature(t);
    EXPECT_INVALID(ValidateImage(r), HasSubstr("temperature"), HasSubstr("is not in [0.05, 100]"));
  }
}

TEST(ValidateDistillRequestTest, OutputUnspecified) {
  v1::DistillRequest r = ImageRequest(1);
  r.set_output(v1::OUTPUT_UNSPECIFIED);
  EXPECT_INVALID(ValidateImage(r), HasSubstr("output kind 0"),
                 HasSubstr("OUTPUT_DENSE or OUTPUT_TOP_K"));
  r.set_output(static_cast<v1::OutputKind>(9));
  EXPECT_INVALID(ValidateImage(r), HasSubstr("output kind 9"));
}

TEST(ValidateDistillRequestTest, TopKOutOfRange) {
  v1::DistillRequest r = ImageRequest(1);
  r.set_output(v1::OUTPUT_TOP_K);
  r.set_top_k(0);
  EXPECT_INVALID(ValidateImage(r), HasSubstr("top_k 0 is not in [1, 10]"), HasSubstr("10 classes"));
  r.set_top_k(-2);
  EXPECT_INVALID(ValidateImage(r), HasSubstr("top_k -2"));
  r.set_top_k(11);  // more than the classes
  EXPECT_INVALID(ValidateImage(r), HasSubstr("top_k 11 is not in [1, 10]"));
  r.set_top_k(10);
  EXPECT_TRUE(ValidateImage(r).ok());
  // More than the server's max_top_k (64) of a 1000-token vocabulary.
  v1::DistillRequest tokens = TokenRequest(1, 8);
  tokens.set_top_k(65);
  EXPECT_INVALID(ValidateTokens(tokens), HasSubstr("top_k 65 is not in [1, 64]"),
                 HasSubstr("1000 classes"));
}

TEST(ValidateDistillRequestTest, TopKWithDenseOutput) {
  v1::DistillRequest r = ImageRequest(1);
  r.set_top_k(5);
  EXPECT_INVALID(ValidateImage(r), HasSubstr("top_k is 5 but the output is dense"));
}

TEST(ValidateDistillRequestTest, SampledOutputNeedsADrawCountAndNothingElse) {
  v1::DistillRequest r = ImageRequest(1);
  r.set_output(v1::OUTPUT_SAMPLED);
  EXPECT_INVALID(ValidateImage(r), HasSubstr("samples 0 is not in [1, 65535]"));
  r.set_samples(65536);
  EXPECT_INVALID(ValidateImage(r), HasSubstr("samples 65536"));
  r.set_samples(32);
  EXPECT_TRUE(ValidateImage(r).ok());
  r.set_top_k(3);
  EXPECT_INVALID(ValidateImage(r), HasSubstr("top_k must be 0"));
  v1::DistillRequest dense = ImageRequest(1);
  dense.set_samples(4);
  EXPECT_INVALID(ValidateImage(dense), HasSubstr("samples is 4 but the output is dense"));
}

TEST(ValidateDistillRequestTest, BadValueDtype) {
  for (v1::DType dtype : {v1::DTYPE_UNSPECIFIED, v1::DTYPE_INT32, v1::DTYPE_UINT16}) {
    v1::DistillRequest r = ImageRequest(1);
    r.set_value_dtype(dtype);
    EXPECT_INVALID(ValidateImage(r), HasSubstr(absl::StrCat("value_dtype ", DTypeName(dtype))),
                   HasSubstr("float32, float16 or bfloat16"));
  }
}

TEST(ValidateDistillRequestTest, UnknownOrDuplicateHiddenLayer) {
  v1::DistillRequest unknown = ImageRequest(1);
  unknown.add_hidden_layers("fc0");
  unknown.add_hidden_layers("conv9");
  EXPECT_INVALID(ValidateImage(unknown), HasSubstr("hidden layer 'conv9' is not exposed"),
                 HasSubstr("it exposes: fc0, fc1"));
  v1::DistillRequest twice = ImageRequest(1);
  twice.add_hidden_layers("fc1");
  twice.add_hidden_layers("fc1");
  EXPECT_INVALID(ValidateImage(twice), HasSubstr("hidden layer 'fc1' is asked for twice"));
  v1::DistillRequest none_exposed = TokenRequest(1, 4);
  none_exposed.add_hidden_layers("fc0");
  EXPECT_INVALID(ValidateTokens(none_exposed), HasSubstr("it exposes: none"));
}

TEST(ValidateDistillRequestTest, TokenIdsOutsideTheVocabulary) {
  for (int32_t bad : {1000, -1, std::numeric_limits<int32_t>::max()}) {
    v1::DistillRequest r = TokenRequest(2, 5);
    std::vector<int32_t> ids(10, 7);
    ids[5 + 3] = bad;  // row 1, position 3
    SetInts(ids, r.mutable_inputs());
    EXPECT_INVALID(ValidateTokens(r),
                   HasSubstr(absl::StrCat("token id ", bad, " at row 1 position 3")),
                   HasSubstr("outside the vocabulary [0, 1000)"));
  }
  v1::DistillRequest last = TokenRequest(1, 2);
  SetInts({0, 999}, last.mutable_inputs());
  EXPECT_TRUE(ValidateTokens(last).ok());
}

TEST(ValidateDistillRequestTest, SequenceTooLong) {
  EXPECT_INVALID(ValidateTokens(TokenRequest(2, 65)), HasSubstr("shape [2,65]"),
                 HasSubstr("sequences of at most 64 tokens"));
  v1::DistillRequest empty = TokenRequest(2, 1);
  empty.mutable_inputs()->set_shape(1, 0);
  empty.mutable_inputs()->clear_data();
  EXPECT_INVALID(ValidateTokens(empty), HasSubstr("shape [2,0]"));
}

TEST(ValidateWireTensorTest, RefusesUnknownDtypesNegativeAndOverflowingShapes) {
  v1::Tensor t;
  t.set_dtype(static_cast<v1::DType>(42));
  EXPECT_THAT(ValidateWireTensor(t, "x").message(), HasSubstr("x has unknown dtype dtype(42)"));
  t.set_dtype(v1::DTYPE_FLOAT32);
  t.add_shape(-3);
  EXPECT_THAT(ValidateWireTensor(t, "x").message(), HasSubstr("invalid shape [-3]"));
  t.clear_shape();
  for (int i = 0; i < 4; ++i) t.add_shape(int64_t{1} << 20);
  EXPECT_THAT(ValidateWireTensor(t, "x").message(), HasSubstr("invalid shape"));
  t.clear_shape();
  t.add_shape(int64_t{1} << 62);  // fits in int64, but not times 4 bytes
  EXPECT_THAT(ValidateWireTensor(t, "x").message(), HasSubstr("invalid shape"));
  t.clear_shape();
  t.add_shape(2);
  t.set_data(std::string(8, '\0'));
  EXPECT_TRUE(ValidateWireTensor(t, "x").ok());
}

// The parts EncodeRequest would send: part 0 with every field and the first
// rows, then parts with only sequence, part and more rows.
std::vector<v1::DistillRequest> Split(const v1::DistillRequest& whole, int parts) {
  const std::string& data = whole.inputs().data();
  const size_t chunk = (data.size() + parts - 1) / parts;
  std::vector<v1::DistillRequest> out;
  for (int p = 0; p < parts; ++p) {
    v1::DistillRequest r;
    if (p == 0) {
      r = whole;
      r.set_part_count(static_cast<uint32_t>(parts));
    } else {
      r.set_sequence(whole.sequence());
      r.set_part(static_cast<uint32_t>(p));
    }
    r.mutable_inputs()->set_data(data.substr(p * chunk, chunk));
    out.push_back(std::move(r));
  }
  return out;
}

TEST(RequestAssemblerTest, JoinsPartsInOrder) {
  RequestAssembler assembler(1 << 20, 2);
  v1::DistillRequest whole = ImageRequest(6);
  std::vector<v1::DistillRequest> parts = Split(whole, 3);
  absl::StatusOr<std::optional<v1::DistillRequest>> got = assembler.Add(parts[0]);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE(got->has_value());
  EXPECT_EQ(assembler.pending(), 1);
  got = assembler.Add(parts[1]);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE(got->has_value());
  got = assembler.Add(parts[2]);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(assembler.pending(), 0);
  v1::DistillRequest joined = **got;
  whole.set_part_count(1);  // the joined request says it is whole
  EXPECT_TRUE(joined.SerializeAsString() == whole.SerializeAsString());
  EXPECT_TRUE(ValidateImage(joined).ok());
  // A single-part request passes straight through.
  got = assembler.Add(ImageRequest(1));
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ(assembler.pending(), 0);
}

TEST(RequestAssemblerTest, PartWithoutPartZero) {
  RequestAssembler assembler(1 << 20, 2);
  v1::DistillRequest stray;
  stray.set_sequence(8);
  stray.set_part(1);
  EXPECT_INVALID(assembler.Add(stray).status(),
                 HasSubstr("request 8: part 1 arrived without part 0"));
}

TEST(RequestAssemblerTest, DuplicatePartZero) {
  RequestAssembler assembler(1 << 20, 2);
  std::vector<v1::DistillRequest> parts = Split(ImageRequest(4), 2);
  ASSERT_TRUE(assembler.Add(parts[0]).ok());
  EXPECT_INVALID(assembler.Add(parts[0]).status(), HasSubstr("part 0 arrived twice"));
  // The partial request was dropped: its next part has no part 0.
  EXPECT_EQ(assembler.pending(), 0);
  EXPECT_INVALID(assembler.Add(parts[1]).status(), HasSubstr("without part 0"));
}

TEST(RequestAssemblerTest, OutOfOrderPart) {
  RequestAssembler assembler(1 << 20, 2);
  std::vector<v1::DistillRequest> parts = Split(ImageRequest(6), 3);
  ASSERT_TRUE(assembler.Add(parts[0]).ok());
  EXPECT_INVALID(assembler.Add(parts[2]).status(),
                 HasSubstr("part 2 arrived where part 1 of 3 was expected"));
  EXPECT_EQ(assembler.pending(), 0);
  // A repeated part.
  ASSERT_TRUE(assembler.Add(parts[0]).ok());
  ASSERT_TRUE(assembler.Add(parts[1]).ok());
  EXPECT_INVALID(assembler.Add(parts[1]).status(),
                 HasSubstr("part 1 arrived where part 2 of 3 was expected"));
  // A part after its request completed has no part 0 to join.
  ASSERT_TRUE(assembler.Add(parts[0]).ok());
  ASSERT_TRUE(assembler.Add(parts[1]).ok());
  ASSERT_TRUE(assembler.Add(parts[2]).ok());
  v1::DistillRequest extra = parts[2];
  extra.set_part(3);
  EXPECT_INVALID(assembler.Add(extra).status(), HasSubstr("without part 0"));
}

TEST(RequestAssemblerTest, OversizeRequests) {
  RequestAssembler assembler(/*max_request_bytes=*/4000, 2);
  // A single part passes through: validation reports its rows.
  ASSERT_TRUE(assembler.Add(ImageRequest(2)).ok());
  // The first of several parts alone above the limit.
  {
    std::vector<v1::DistillRequest> big = Split(ImageRequest(4), 2);
    EXPECT_INVALID(assembler.Add(big[0]).status(),
                   HasSubstr("part 0 carries 6272 bytes of inputs, more than the 4000"));
  }
  // Parts each below it, together above.
  std::vector<v1::DistillRequest> parts = Split(ImageRequest(2), 2);
  ASSERT_TRUE(assembler.Add(parts[0]).ok());
  EXPECT_INVALID(assembler.Add(parts[1]).status(), HasSubstr("the parts carry more than the 4000"));
  EXPECT_EQ(assembler.pending(), 0);
}

TEST(RequestAssemblerTest, TooManyPendingRequests) {
  RequestAssembler assembler(1 << 20, /*max_pending=*/2);
  for (uint64_t seq : {1, 2}) {
    v1::DistillRequest r = Split(ImageRequest(2), 2)[0];
    r.set_sequence(seq);
    ASSERT_TRUE(assembler.Add(r).ok());
  }
  v1::DistillRequest third = Split(ImageRequest(2), 2)[0];
  third.set_sequence(3);
  absl::Status status = assembler.Add(third).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(status.message(), HasSubstr("request 3: more than 2 multi-part requests"));
  // Single-part requests still pass.
  EXPECT_TRUE(assembler.Add(ImageRequest(1)).ok());
  EXPECT_EQ(assembler.pending(), 2);
}

}  // namespace
}  // namespace retort::teacher
