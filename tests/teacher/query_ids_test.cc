// Query ids over the wire: a language-model teacher served over gRPC answers
// the log-probabilities at ids the request names per position, equal to the
// dense computation, in single- and multi-part requests and answers; bad
// query ids are refused naming what is wrong.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>

#include "client/remote_teacher_client.h"
#include "client/teacher_client.h"
#include "models/llama.h"
#include "teacher/llama_teacher.h"
#include "teacher/request_validation.h"
#include "teacher/server/teacher_server.h"
#include "teacher/wire_codec.h"

namespace retort::teacher {
namespace {

using ::testing::HasSubstr;

class QueryIdsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(3);
    models::LlamaConfig c;
    c.vocab_size = 50;
    c.hidden_size = 32;
    c.intermediate_size = 48;
    c.num_hidden_layers = 1;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.max_position_embeddings = 32;
    model_ = std::make_shared<models::LlamaModel>(c);
    teacher_ = std::shared_ptr<Teacher>(LlamaTeacher::FromModel(model_, "tok"));
  }

  std::unique_ptr<client::RemoteTeacherClient> Serve(int64_t max_message_bytes,
                                                     teacher::OutputSpec output) {
    TeacherServer::Options options;
    // The server's smallest message; dense answers below still take two.
    options.max_message_bytes = 65536;
    options.max_sequence_length = 32;
    absl::StatusOr<std::unique_ptr<TeacherServer>> server =
        TeacherServer::Create(std::move(options), teacher_);
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    client::RemoteTeacherClient::Options o;
    o.address = absl::StrCat("127.0.0.1:", server_->port());
    o.connect_timeout = absl::Seconds(20);
    o.request_timeout = absl::Seconds(20);
    o.max_message_bytes = max_message_bytes;
    o.output = output;
    absl::StatusOr<std::unique_ptr<client::RemoteTeacherClient>> c =
        client::RemoteTeacherClient::Create(std::move(o));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  std::shared_ptr<models::LlamaModel> model_;
  std::shared_ptr<Teacher> teacher_;
  std::unique_ptr<TeacherServer> server_;
};

TEST_F(QueryIdsTest, AnswersTheDenseLogProbabilitiesAtTheNamedIds) {
  const torch::Tensor tokens = torch::randint(50, {16, 32}, torch::kInt64);
  const torch::Tensor ids = torch::randint(50, {16, 32, 5}, torch::kInt64);
  torch::Tensor dense;
  {
    torch::NoGradGuard no_grad;
    model_->eval();
    dense = torch::log_softmax(model_->forward(tokens) / 2.0, -1);
  }
  const torch::Tensor expected = dense.reshape({-1, 50}).gather(1, ids.reshape({-1, 5}));
  // Requests in one message and in a part per row (the client's limit);
  // top-k answers in one message, dense ones in two.
  for (int64_t bytes : {int64_t{1} << 20, int64_t{600}}) {
    for (const char* kind : {"topk", "dense"}) {
      SCOPED_TRACE(absl::StrCat(bytes, " bytes, ", kind));
      absl::StatusOr<OutputSpec> spec = OutputSpec::Parse(kind, 4, "fp32");
      ASSERT_TRUE(spec.ok());
      spec->keep_top_k = true;
      std::unique_ptr<client::RemoteTeacherClient> client = Serve(bytes, *spec);
      ASSERT_NE(client, nullptr);
      absl::StatusOr<client::TeacherClient::Targets> answer =
          client
              ->SubmitTargets(
                  {.inputs = tokens, .temperature = 2.0, .hidden_layers = {}, .query_ids = ids})
              .get();
      ASSERT_TRUE(answer.ok()) << answer.status();
      ASSERT_TRUE(answer->query_log_probs.defined());
      EXPECT_EQ(answer->query_log_probs.sizes(), (std::vector<int64_t>{512, 5}));
      EXPECT_LT((answer->query_log_probs - expected).abs().max().item<double>(), 1e-6);
      // Without query ids, none come back.
      absl::StatusOr<client::TeacherClient::Targets> plain =
          client
              ->SubmitTargets(
                  {.inputs = tokens, .temperature = 2.0, .hidden_layers = {}, .query_ids = {}})
              .get();
      ASSERT_TRUE(plain.ok()) << plain.status();
      EXPECT_FALSE(plain->query_log_probs.defined());
      server_.reset();
    }
  }
}

TEST_F(QueryIdsTest, BadQueryIdsAreRefusedNamingWhatIsWrong) {
  std::unique_ptr<client::RemoteTeacherClient> client =
      Serve(int64_t{1} << 20, *OutputSpec::Parse("topk", 4, "fp32"));
  ASSERT_NE(client, nullptr);
  const torch::Tensor tokens = torch::randint(50, {2, 8}, torch::kInt64);
  auto ask = [&](const torch::Tensor& ids) {
    return client
        ->SubmitTargets(
            {.inputs = tokens, .temperature = 1.0, .hidden_layers = {}, .query_ids = ids})
        .get()
        .status();
  };
  EXPECT_THAT(ask(torch::zeros({2, 7, 3}, torch::kInt64)).message(), HasSubstr("[2, 8, m >= 1]"));
  EXPECT_THAT(ask(torch::full({2, 8, 3}, 50, torch::kInt64)).message(),
              HasSubstr("query id 50 is outside the vocabulary [0, 50)"));
  // The server checks what arrives, whatever the client checked: a request
  // built by hand with an id out of range.
  std::vector<v1::DistillRequest> parts = EncodeRequest(
      1, tokens, 1.0, OutputSpec(), {}, torch::full({2, 8, 2}, 7, torch::kInt64), 1 << 20);
  ASSERT_EQ(parts.size(), 1u);
  std::string* data = parts[0].mutable_query_ids()->mutable_data();
  const int32_t bad = 99;
  std::memcpy(data->data() + 4 * 5, &bad, 4);
  v1::ServerLimits limits;
  limits.set_max_top_k(1024);
  limits.set_max_rows_per_request(100);
  limits.set_min_temperature(0.05);
  limits.set_max_temperature(100);
  limits.set_max_sequence_length(32);
  absl::Status refused = ValidateDistillRequest(parts[0], teacher_->fingerprint(), limits);
  EXPECT_THAT(refused.message(), HasSubstr("query id 99 at row 0 position 2"));
  parts[0].mutable_query_ids()->set_dtype(v1::DTYPE_FLOAT32);
  EXPECT_THAT(ValidateDistillRequest(parts[0], teacher_->fingerprint(), limits).message(),
              HasSubstr("expected int32"));
}

TEST_F(QueryIdsTest, MultiPartRequestsCarryQueryIdsInEveryPart) {
  const torch::Tensor tokens = torch::randint(50, {4, 8}, torch::kInt64);
  const torch::Tensor ids = torch::randint(50, {4, 8, 3}, torch::kInt64);
  std::vector<v1::DistillRequest> parts = EncodeRequest(5, tokens, 1.0, OutputSpec(), {}, ids, 200);
  ASSERT_EQ(parts.size(), 4u);  // a row (32 + 96 bytes) per part
  RequestAssembler assembler(1 << 20, 4, 1 << 20);
  std::optional<v1::DistillRequest> whole;
  for (v1::DistillRequest& part : parts) {
    absl::StatusOr<std::optional<v1::DistillRequest>> added = assembler.Add(part);
    ASSERT_TRUE(added.ok()) << added.status();
    if (added->has_value()) whole = **added;
  }
  ASSERT_TRUE(whole.has_value());
  absl::StatusOr<torch::Tensor> joined = RequestQueryIds(*whole);
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_TRUE(joined->equal(ids.reshape({-1, 3})));
  // A part without them, or more query bytes than allowed, is refused.
  parts[2].clear_query_ids();
  RequestAssembler second(1 << 20, 4, 1 << 20);
  ASSERT_TRUE(second.Add(parts[0]).ok());
  ASSERT_TRUE(second.Add(parts[1]).ok());
  EXPECT_THAT(second.Add(parts[2]).status().message(),
              HasSubstr("part 2 lacks the query_ids part 0 carries"));
  RequestAssembler tight(1 << 20, 4, 150);  // a part holds 96 bytes of query ids
  ASSERT_TRUE(tight.Add(parts[0]).ok());
  EXPECT_THAT(tight.Add(parts[1]).status().message(), HasSubstr("bytes of query ids"));
}

}  // namespace
}  // namespace retort::teacher
