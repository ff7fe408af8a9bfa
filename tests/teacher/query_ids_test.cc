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
    options.max_message_bytes = max_message_bytes;
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
  const torch::Tensor tokens = torch::randint(50, {6, 20}, torch::kInt64);
  const torch::Tensor ids = torch::randint(50, {6, 20, 5}, torch::kInt64);
  absl::StatusOr<torch::Tensor> dense = teacher_->LogProbs(tokens, 2.0);
  ASSERT_TRUE(dense.ok()) << dense.status();
  const torch::Tensor expected = dense->reshape({-1, 50}).gather(1, ids.reshape({-1, 5}));
  // One message, and answers and requests split into many parts; top-k and
  // dense outputs.
  for (int64_t bytes : {int64_t{1} << 20, int64_t{600}}) {
    for (const char* kind : {"topk", "dense"}) {
      SCOPED_TRACE(absl::StrCat(bytes, " bytes, ", kind));
      absl::StatusOr<OutputSpec> spec = OutputSpec::Parse(kind, 4, "fp32");
      ASSERT_TRUE(spec.ok());
      spec->keep_top_k = true;
      std::unique_ptr<client::RemoteTeacherClient> client = Serve(bytes, *spec);
      ASSERT_NE(client, nullptr);
      absl::StatusOr<client::TeacherClient::Targets> answer =
          client->SubmitTargets({.inputs = tokens, .temperature = 2.0, .query_ids = ids}).get();
      ASSERT_TRUE(answer.ok()) << answer.status();
      ASSERT_TRUE(answer->query_log_probs.defined());
      EXPECT_EQ(answer->query_log_probs.sizes(), (std::vector<int64_t>{120, 5}));
      EXPECT_LT((answer->query_log_probs - expected).abs().max().item<double>(), 1e-6);
      // Without query ids, none come back.
      absl::StatusOr<client::TeacherClient::Targets> plain =
          client->SubmitTargets({.inputs = tokens, .temperature = 2.0}).get();
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
    return client->SubmitTargets({.inputs = tokens, .temperature = 1.0, .query_ids = ids})
        .get()
        .status();
  };
  EXPECT_THAT(ask(torch::zeros({2, 7, 3}, torch::kInt64)).message(), HasSubstr("[2, 8, m >= 1]"));
  EXPECT_THAT(ask(torch::full({2, 8, 3}, 50, torch::kInt64)).message(),
              HasSubstr("query id 50 is outside the vocabulary [0, 50)"));
  // The server checks what arrives, whatever the client checked: a request
  // built by hand with an id out of range.
  std::vector<v1::DistillRequest> parts =
      EncodeRequest(1, tokens, 1.0, OutputSpec(), {}, torch::full({2, 8, 2}, 7, torch::kInt64),
                    1 << 20);
  ASSERT_EQ(parts.size(), 1u);
  std::string* data = parts[0].mutable_query_ids()->mutable_data();
  const int32_t bad = 99;
  std::memcpy(data->data() + 4 * 5, &bad, 4);
  v1::ServerLimits limits;
  limits.set_max_top_k(1024);
  limits.set_max_rows_per_request(100);
  limits.set_min_temperature(0.05);
  limits.set_max_temperature(100);
  absl::Status refused = ValidateDistillRequest(parts[0], teacher_->fingerprint(), limits);
  EXPECT_THAT(refused.message(), HasSubstr("query id 99 at row 0 position 2"));
  parts[0].mutable_query_ids()->set_dtype(v1::DTYPE_FLOAT32);
  EXPECT_THAT(ValidateDistillRequest(parts[0], teacher_->fingerprint(), limits).message(),
              HasSubstr("expected int32"));
}

}  // namespace
}  // namespace retort::teacher
