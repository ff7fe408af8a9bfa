// Integration tests of the teacher gRPC server (TeacherServer, TeacherService)
// and the trainer's RemoteTeacherClient, in one process over 127.0.0.1.
//
// Requests that must stay in flight are held by GatedTeacher, a wrapper whose
// Forward blocks while its gate is closed, so no test depends on timing: every
// wait is a bounded poll on a state the server reports (metrics, health,
// answers).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpc/grpc.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/remote_teacher_client.h"
#include "client/teacher_channel.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "models/classifier.h"
#include "retort/v1/teacher.grpc.pb.h"
#include "teacher/native_teacher.h"
#include "teacher/server/teacher_server.h"
#include "teacher/wire_codec.h"
#include "tests/teacher/test_certs.h"
#include "tests/teacher/test_teachers.h"

namespace retort::teacher {
namespace {

using client::RemoteTeacherClient;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;
using Health = ::grpc::health::v1::Health;
using HealthCheckRequest = ::grpc::health::v1::HealthCheckRequest;
using HealthCheckResponse = ::grpc::health::v1::HealthCheckResponse;

// Keeps gRPC initialized for the whole run. Otherwise the last gRPC object a
// test destroys runs grpc_shutdown, which in gRPC 1.51 sometimes waits about
// 10 s for an executor thread's poll to time out.
class GrpcEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { grpc_init(); }
};
::testing::Environment* const kGrpcEnvironment =
    ::testing::AddGlobalTestEnvironment(new GrpcEnvironment);

// The bound on every wait in this file (a failing test fails, never hangs).
constexpr absl::Duration kBound = absl::Seconds(10);
constexpr int kInvalidArgument = static_cast<int>(absl::StatusCode::kInvalidArgument);
constexpr int kResourceExhausted = static_cast<int>(absl::StatusCode::kResourceExhausted);
constexpr int kUnavailable = static_cast<int>(absl::StatusCode::kUnavailable);

// Polls `condition` every few milliseconds for up to `timeout`.
using testutil::Images;
using testutil::MakeModel;
bool Eventually(const std::function<bool()>& condition, absl::Duration timeout = kBound) {
  return testutil::Eventually(condition, timeout);
}

double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

// A teacher whose Forward blocks while the gate is closed (for at most 30 s,
// so a broken test cannot hang), counting the calls that entered.
class GatedTeacher : public Teacher {
 public:
  explicit GatedTeacher(std::shared_ptr<Teacher> inner) : inner_(std::move(inner)) {}

  const v1::TeacherFingerprint& fingerprint() const override { return inner_->fingerprint(); }
  int64_t max_batch() const override { return inner_->max_batch(); }
  absl::StatusOr<TeacherOutput> Forward(const torch::Tensor& inputs,
                                        const std::vector<std::string>& hidden_layers) override {
    {
      absl::MutexLock lock(&mu_);
      ++entered_;
      mu_.AwaitWithTimeout(
          absl::Condition(
              +[](GatedTeacher* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->mu_) { return !t->closed_; },
              this),
          absl::Seconds(30));
    }
    return inner_->Forward(inputs, hidden_layers);
  }

  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    closed_ = false;
  }
  int entered() const {
    absl::MutexLock lock(&mu_);
    return entered_;
  }
  // Waits until `n` Forward calls have entered (counting the warm-up).
  bool WaitEntered(int n) {
    absl::MutexLock lock(&mu_);
    struct Arg {
      GatedTeacher* t;
      int n;
    } arg{this, n};
    return mu_.AwaitWithTimeout(
        absl::Condition(
            +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS { return a->t->entered_ >= a->n; }, &arg),
        kBound);
  }

 private:
  const std::shared_ptr<Teacher> inner_;
  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int entered_ ABSL_GUARDED_BY(mu_) = 0;
};

std::shared_ptr<grpc::Channel> PlainChannel(int port) {
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
}

// One raw Distill stream with a deadline, for sending hand-made requests.
class RawStream {
 public:
  using ReaderWriter = grpc::ClientReaderWriter<v1::DistillRequest, v1::DistillResponse>;

  explicit RawStream(const std::shared_ptr<grpc::Channel>& channel,
                     absl::Duration deadline = absl::Seconds(30),
                     const std::string& authorization = "")
      : stub_(v1::Teacher::NewStub(channel)) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    if (!authorization.empty()) context_.AddMetadata("authorization", authorization);
    stream_ = stub_->Distill(&context_);
  }
  ~RawStream() {
    if (!finished_) {
      context_.TryCancel();
      Finish();
    }
  }

  bool Write(const v1::DistillRequest& request) { return stream_->Write(request); }
  bool WriteAll(const std::vector<v1::DistillRequest>& parts) {
    for (const v1::DistillRequest& part : parts) {
      if (!Write(part)) return false;
    }
    return true;
  }
  std::optional<v1::DistillResponse> Read() {
    v1::DistillResponse response;
    if (!stream_->Read(&response)) return std::nullopt;
    return response;
  }
  // Reads the parts of one answer (assumes no other answer interleaves).
  std::vector<v1::DistillResponse> ReadAnswer() {
    std::vector<v1::DistillResponse> parts;
    while (std::optional<v1::DistillResponse> r = Read()) {
      parts.push_back(*r);
      if (r->error_code() != 0 || r->part() + 1 >= std::max<uint32_t>(r->part_count(), 1)) break;
    }
    return parts;
  }
  // Half-closes, reads whatever is left and returns the call's status.
  grpc::Status Finish() {
    finished_ = true;
    stream_->WritesDone();
    v1::DistillResponse ignored;
    while (stream_->Read(&ignored)) {
    }
    return stream_->Finish();
  }
  grpc::ClientContext& context() { return context_; }

 private:
  std::unique_ptr<v1::Teacher::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<ReaderWriter> stream_;
  bool finished_ = false;
};

// One single-part request for `inputs`.
v1::DistillRequest Request(uint64_t sequence, const torch::Tensor& inputs, double temperature = 1.0,
                           OutputSpec output = {}, const std::vector<std::string>& hidden = {}) {
  std::vector<v1::DistillRequest> parts = EncodeRequest(
      sequence, inputs, temperature, output, hidden, torch::Tensor(), kDefaultMaxMessageBytes);
  EXPECT_EQ(parts.size(), 1u);
  return parts[0];
}

// Decodes a complete answer read from a raw stream.
absl::StatusOr<Answer> Assemble(const std::vector<v1::DistillResponse>& parts) {
  AnswerAssembler assembler;
  for (const v1::DistillResponse& part : parts) {
    absl::StatusOr<std::optional<Answer>> added = assembler.Add(part);
    if (!added.ok()) return added.status();
    if (added->has_value()) return **added;
  }
  return absl::DataLossError(absl::StrCat("incomplete answer: ", parts.size(), " parts"));
}

// GET http://127.0.0.1:<port><path> over a plain socket; the whole response.
std::string HttpGet(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    const std::string request =
        absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if (::send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      ssize_t n;
      while ((n = ::recv(fd, buffer, sizeof(buffer), 0)) > 0) response.append(buffer, n);
    }
  }
  ::close(fd);
  return response;
}

// Runs a shell command; its exit status and combined output.
int RunShell(const std::string& command, std::string* output) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output->append(buffer, n);
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string MakeTempDir(const std::string& name) {
  std::string pattern = ::testing::TempDir() + "/" + name + ".XXXXXX";
  char* dir = ::mkdtemp(pattern.data());
  return dir == nullptr ? "" : std::string(dir);
}

class TeacherServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(7);
    model_ = MakeModel(1);
    ASSERT_NE(model_, nullptr);
    native_ = std::shared_ptr<Teacher>(NativeTeacher::FromModel(model_));
    gate_ = std::make_shared<GatedTeacher>(native_);
  }
  void TearDown() override {
    gate_->Open();
    server_.reset();
  }

  // Starts server_ serving the gated teacher; false (with a failure) if not.
  bool StartServer(TeacherServer::Options options = {}) {
    absl::StatusOr<std::unique_ptr<TeacherServer>> server =
        TeacherServer::Create(std::move(options), gate_);
    if (!server.ok()) {
      ADD_FAILURE() << server.status();
      return false;
    }
    server_ = *std::move(server);
    return true;
  }

  std::string Address() const { return absl::StrCat("127.0.0.1:", server_->port()); }

  RemoteTeacherClient::Options ClientOptions() const {
    RemoteTeacherClient::Options options;
    options.address = Address();
    options.connect_timeout = kBound;
    options.request_timeout = absl::Seconds(30);
    options.reconnect_timeout = kBound;
    return options;
  }

  static std::unique_ptr<RemoteTeacherClient> NewClient(RemoteTeacherClient::Options options) {
    absl::StatusOr<std::unique_ptr<RemoteTeacherClient>> client =
        RemoteTeacherClient::Create(std::move(options));
    if (!client.ok()) {
      ADD_FAILURE() << client.status();
      return nullptr;
    }
    return *std::move(client);
  }
  std::unique_ptr<RemoteTeacherClient> NewClient() { return NewClient(ClientOptions()); }

  torch::Tensor Expected(const torch::Tensor& inputs, double temperature) {
    absl::StatusOr<torch::Tensor> lp = native_->LogProbs(inputs, temperature);
    EXPECT_TRUE(lp.ok()) << lp.status();
    return lp.ok() ? *lp : torch::Tensor();
  }

  double GaugeValue(const char* name) { return server_->metrics().GetGauge(name, "")->value(); }
  double InFlight() { return GaugeValue("retort_teacher_in_flight_requests"); }

  std::shared_ptr<models::Classifier> model_;
  std::shared_ptr<Teacher> native_;
  std::shared_ptr<GatedTeacher> gate_;
  std::unique_ptr<TeacherServer> server_;
};

// --- 1. GetInfo -------------------------------------------------------------

TEST_F(TeacherServerTest, GetInfoReportsFingerprintProtocolVersionAndLimits) {
  TeacherServer::Options options;
  options.max_rows_per_request = 4096;
  options.max_top_k = 7;
  options.max_streams = 5;
  options.max_in_flight_per_stream = 9;
  ASSERT_TRUE(StartServer(options));
  EXPECT_GT(server_->port(), 0);
  EXPECT_TRUE(MessageDifferencer::Equals(server_->fingerprint(), native_->fingerprint()));

  auto stub = v1::Teacher::NewStub(PlainChannel(server_->port()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kBound));
  v1::GetInfoResponse info;
  grpc::Status status = stub->GetInfo(&context, v1::GetInfoRequest(), &info);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(MessageDifferencer::Equals(info.fingerprint(), native_->fingerprint()))
      << info.fingerprint().DebugString();
  EXPECT_EQ(info.fingerprint().architecture(), "mlp 784-32-10");
  EXPECT_EQ(info.fingerprint().num_classes(), 10);
  ASSERT_EQ(info.fingerprint().hidden_layers_size(), 1);
  EXPECT_EQ(info.fingerprint().hidden_layers(0).name(), "fc0");
  EXPECT_EQ(info.protocol_version(), 1);
  const v1::ServerLimits& limits = info.limits();
  EXPECT_EQ(limits.max_rows_per_request(), 4096);
  EXPECT_EQ(limits.max_sequence_length(), 0);
  EXPECT_EQ(limits.min_temperature(), kMinTemperature);
  EXPECT_EQ(limits.max_temperature(), kMaxTemperature);
  EXPECT_EQ(limits.max_top_k(), 7);
  EXPECT_EQ(limits.max_streams(), 5);
  EXPECT_EQ(limits.max_in_flight_per_stream(), 9);
  EXPECT_EQ(limits.max_message_bytes(), kDefaultMaxMessageBytes);
  EXPECT_EQ(limits.compute_dtype(), "fp32");
  EXPECT_FALSE(limits.deterministic());

  // The client sees the same.
  std::unique_ptr<RemoteTeacherClient> client = NewClient();
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(MessageDifferencer::Equals(client->info(), info));
  absl::StatusOr<v1::TeacherFingerprint> fp = client->Fingerprint();
  ASSERT_TRUE(fp.ok()) << fp.status();
  EXPECT_EQ(fp->weights_sha256(), native_->fingerprint().weights_sha256());
}

// --- 2. Answers ---------------------------------------------------------------

TEST_F(TeacherServerTest, DenseLogProbsEqualTheTeachersOwn) {
  ASSERT_TRUE(StartServer());
  std::unique_ptr<RemoteTeacherClient> client = NewClient();
  ASSERT_NE(client, nullptr);
  for (double temperature : {1.0, 4.0, 0.5}) {
    torch::Tensor x = Images(5);
    absl::StatusOr<torch::Tensor> remote = client->LogProbs(x, temperature);
    ASSERT_TRUE(remote.ok()) << remote.status();
    torch::Tensor expected = Expected(x, temperature);
    ASSERT_TRUE(remote->sizes().equals(expected.sizes()));
    EXPECT_LE(MaxAbsDiff(*remote, expected), 1e-6) << "T=" << temperature;
    EXPECT_TRUE(torch::allclose(remote->exp().sum(1), torch::ones({5}), 1e-5, 1e-5));
  }
}

TEST_F(TeacherServerTest, DeterministicModeIsBitIdentical) {
  TeacherServer::Options options;
  options.batcher.deterministic = true;
  ASSERT_TRUE(StartServer(options));
  std::unique_ptr<RemoteTeacherClient> client = NewClient();
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->info().limits().deterministic());
  // Several requests in flight at once: each still runs on its own.
  std::vector<torch::Tensor> inputs;
  std::vector<RemoteTeacherClient::AnswerFuture> futures;
  for (int i = 0; i < 6; ++i) {
    inputs.push_back(Images(1 + i));
    futures.push_back(client->Send(inputs.back(), 2.0));
  }
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<Answer> answer = client->Wait(futures[i]);
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_TRUE(torch::equal(answer->log_probs, Expected(inputs[i], 2.0))) << "request " << i;
  }
}

TEST_F(TeacherServerTest, TopKHalfPrecisionDecodesCloseToDense) {
  ASSERT_TRUE(StartServer());
  struct Case {
    v1::DType dtype;
    double tolerance;      // relative and absolute, on the top-k log-probabilities
    double sum_tolerance;  // on the sum of a row's probabilities
  };
  for (const Case& c : {Case{v1::DTYPE_FLOAT16, 1e-3, 2e-3}, Case{v1::DTYPE_BFLOAT16, 8e-3, 1.5e-2},
                        Case{v1::DTYPE_FLOAT32, 1e-6, 1e-5}}) {
    SCOPED_TRACE(c.dtype);
    RemoteTeacherClient::Options options = ClientOptions();
    const int64_t k = 3;
    options.output = {v1::OUTPUT_TOP_K, static_cast<int32_t>(k), c.dtype};
    std::unique_ptr<RemoteTeacherClient> client = NewClient(options);
    ASSERT_NE(client, nullptr);
    torch::Tensor x = Images(6);
    absl::StatusOr<torch::Tensor> decoded = client->LogProbs(x, 2.0);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    torch::Tensor expected = Expected(x, 2.0);
    ASSERT_TRUE(decoded->sizes().equals(expected.sizes()));
    torch::Tensor top = std::get<1>(expected.topk(k, 1));
    EXPECT_TRUE(
        torch::allclose(decoded->gather(1, top), expected.gather(1, top), c.tolerance, c.tolerance))
        << decoded->gather(1, top) << expected.gather(1, top);
    // The mass outside the top k is sent in float32: exact to rounding.
    torch::Tensor outside = torch::ones_like(expected, torch::kBool).scatter(1, top, false);
    torch::Tensor tail = (expected.exp() * outside).sum(1);
    torch::Tensor decoded_tail = (decoded->exp() * outside).sum(1);
    EXPECT_TRUE(torch::allclose(decoded_tail, tail, 1e-5, 1e-6)) << decoded_tail << tail;
    EXPECT_TRUE(torch::allclose(decoded->exp().sum(1), torch::ones({6}), 0, c.sum_tolerance))
        << decoded->exp().sum(1);
  }
}

TEST_F(TeacherServerTest, SampledAnswersAreTheInProcessDrawsOfEachRow) {
  ASSERT_TRUE(StartServer());
  RemoteTeacherClient::Options options = ClientOptions();
  options.output = {v1::OUTPUT_SAMPLED, 0, v1::DTYPE_FLOAT32, /*keep_top_k=*/true, /*samples=*/20};
  std::unique_ptr<RemoteTeacherClient> client = NewClient(options);
  ASSERT_NE(client, nullptr);
  const torch::Tensor x = Images(6);
  const absl::StatusOr<Answer> remote = client->Wait(client->Send(x, 2.0));
  ASSERT_TRUE(remote.ok()) << remote.status();
  // The server seeds each row's draws by its inputs: the same as drawn here,
  // and a row asked alone gets the draws it got in the batch.
  const SampledTargets want = SampleTargets(Expected(x, 2.0), 20, RowKeys(x));
  EXPECT_TRUE(torch::allclose(remote->top_k.ToDense(10), want.ToTopK().ToDense(10)));
  const absl::StatusOr<Answer> alone = client->Wait(client->Send(x.narrow(0, 4, 1), 2.0));
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_TRUE(torch::allclose(alone->top_k.ToDense(10), remote->top_k.ToDense(10).narrow(0, 4, 1)));
}

TEST_F(TeacherServerTest, HiddenStatesComeBackWithTheLogProbs) {
  ASSERT_TRUE(StartServer());
  std::unique_ptr<RemoteTeacherClient> client = NewClient();
  ASSERT_NE(client, nullptr);
  torch::Tensor x = Images(4);
  absl::StatusOr<Answer> answer = client->Wait(client->Send(x, 1.0, {"fc0"}));
  ASSERT_TRUE(answer.ok()) << answer.status();
  absl::StatusOr<TeacherOutput> direct = native_->Forward(x, {"fc0"});
  ASSERT_TRUE(direct.ok()) << direct.status();
  ASSERT_EQ(answer->hidden.count("fc0"), 1u);
  EXPECT_LE(MaxAbsDiff(answer->hidden.at("fc0"), direct->hidden.at("fc0")), 1e-6);
  EXPECT_LE(MaxAbsDiff(answer->log_probs, Expected(x, 1.0)), 1e-6);
}

TEST_F(TeacherServerTest, LargeRequestTravelsInPartsUnderTheMessageLimit) {
  ASSERT_TRUE(StartServer());
  const torch::Tensor x = Images(2000);  // 6.3 MB of float32
  ASSERT_GT(x.nbytes(), 5 * kDefaultMaxMessageBytes);
  const torch::Tensor expected = Expected(x, 2.0);

  // Through the client.
  std::unique_ptr<RemoteTeacherClient> client = NewClient();
  ASSERT_NE(client, nullptr);
  absl::StatusOr<torch::Tensor> remote = client->LogProbs(x, 2.0);
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_LE(MaxAbsDiff(*remote, expected), 1e-6);
  RemoteTeacherClient::Stats stats = client->stats();
  EXPECT_EQ(stats.requests, 1);
  EXPECT_GE(stats.bytes_sent, static_cast<int64_t>(x.nbytes()));
  EXPECT_GE(stats.bytes_received, 2000 * 10 * 4);

  // The same parts by hand: each message is under 1 MiB.
  std::vector<v1::DistillRequest> parts =
      EncodeRequest(41, x, 2.0, OutputSpec(), {}, torch::Tensor(), kDefaultMaxMessageBytes);
  EXPECT_GE(parts.size(), 7u);
  for (const v1::DistillRequest& part : parts) {
    EXPECT_LE(static_cast<int64_t>(part.ByteSizeLong()), kDefaultMaxMessageBytes);
  }
  RawStream stream(PlainChannel(server_->port()));
  ASSERT_TRUE(stream.WriteAll(parts));
  std::vector<v1::DistillResponse> responses = stream.ReadAnswer();
  ASSERT_FALSE(responses.empty());
  for (const v1::DistillResponse& r : responses) {
    EXPECT_EQ(r.sequence(), 41u);
    EXPECT_LE(static_cast<int64_t>(r.ByteSizeLong()), kDefaultMaxMessageBytes);
  }
  absl::StatusOr<Answer> answer = Assemble(responses);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_LE(MaxAbsDiff(answer->log_probs, expected), 1e-6);

  // One unchunked 6 MB message is refused by the transport.
  RawStream oversized(PlainChannel(server_->port()));
  std::vector<v1::DistillRequest> whole =
      EncodeRequest(1, x, 2.0, OutputSpec(), {}, torch::Tensor(), 1 << 30);
  ASSERT_EQ(whole.size(), 1u);
  oversized.Write(whole[0]);
  grpc::Status status = oversized.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("larger than max"));
}

TEST_F(TeacherServerTest, AnswersAreChunkedToTheServersMessageSize) {
  TeacherServer::Options options;
  options.max_message_bytes = 65536;
  ASSERT_TRUE(StartServer(options));
  const torch::Tensor x = Images(2000);
  std::vector<v1::DistillRequest> parts =
      EncodeRequest(9, x, 1.5, OutputSpec(), {"fc0"}, torch::Tensor(), options.max_message_bytes);
  EXPECT_GT(parts.size(), 50u);
  for (const v1::DistillRequest& part : parts) {
    EXPECT_LE(static_cast<int64_t>(part.ByteSizeLong()), options.max_message_bytes);
  }
  RawStream stream(PlainChannel(server_->port()));
  ASSERT_TRUE(stream.WriteAll(parts));
  std::vector<v1::DistillResponse> responses = stream.ReadAnswer();
  // 2000 rows * (10 + 32) floats = 336 kB: several messages of at most 64 KiB.
  EXPECT_GE(responses.size(), 6u);
  for (const v1::DistillResponse& r : responses) {
    EXPECT_EQ(r.error_code(), 0) << r.error_message();
    EXPECT_LE(static_cast<int64_t>(r.ByteSizeLong()), options.max_message_bytes);
  }
  absl::StatusOr<Answer> answer = Assemble(responses);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_LE(MaxAbsDiff(answer->log_probs, Expected(x, 1.5)), 1e-6);
  absl::StatusOr<TeacherOutput> direct = native_->Forward(x, {"fc0"});
  ASSERT_TRUE(direct.ok());
  EXPECT_LE(MaxAbsDiff(answer->hidden.at("fc0"), direct->hidden.at("fc0")), 1e-6);

  // The client with the same message size gets the same answer.
  RemoteTeacherClient::Options client_options = ClientOptions();
  client_options.max_message_bytes = options.max_message_bytes;
  std::unique_ptr<RemoteTeacherClient> client = NewClient(client_options);
  ASSERT_NE(client, nullptr);
  absl::StatusOr<torch::Tensor> remote = client->LogProbs(x, 1.5);
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_LE(MaxAbsDiff(*remote, Expected(x, 1.5)), 1e-6);
}

// --- 3. Concurrency and batching -----------------------------------------------

TEST_F(TeacherServerTest, ConcurrentRequestsGetTheirOwnAnswersAndBatchesMerge) {
  TeacherServer::Options options;
  options.batcher.max_delay = absl::Milliseconds(20);
  ASSERT_TRUE(StartServer(options));
  Histogram* batch_requests = server_->metrics().GetHistogram("retort_teacher_batch_requests", "",
                                                              ExponentialBuckets(1, 2, 8));

  // Hold one request in the forward pass; three more queue up behind it and
  // must then run as one batch.
  {
    std::unique_ptr<RemoteTeacherClient> client = NewClient();
    ASSERT_NE(client, nullptr);
    const int warm = gate_->entered();
    gate_->Close();
    torch::Tensor first = Images(1);
    RemoteTeacherClient::AnswerFuture held = client->Send(first, 1.0);
    ASSERT_TRUE(gate_->WaitEntered(warm + 1));
    std::vector<torch::Tensor> inputs = {Images(2), Images(3), Images(4)};
    std::vector<RemoteTeacherClient::AnswerFuture> queued;
    for (const torch::Tensor& x : inputs) queued.push_back(client->Send(x, 3.0));
    EXPECT_TRUE(Eventually([&] { return GaugeValue("retort_teacher_queue_rows") == 9; }));
    gate_->Open();
    absl::StatusOr<Answer> answer = client->Wait(held);
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_LE(MaxAbsDiff(answer->log_probs, Expected(first, 1.0)), 1e-5);
    for (size_t i = 0; i < queued.size(); ++i) {
      answer = client->Wait(queued[i]);
      ASSERT_TRUE(answer.ok()) << answer.status();
      EXPECT_LE(MaxAbsDiff(answer->log_probs, Expected(inputs[i], 3.0)), 1e-5);
    }
    Histogram::Snapshot snapshot = batch_requests->snapshot();
    EXPECT_EQ(snapshot.count, 2u);
    EXPECT_EQ(snapshot.sum, 4.0);
    EXPECT_GT(snapshot.sum, static_cast<double>(snapshot.count));
  }

  // Several clients, each used by several threads at once.
  constexpr int kClients = 3, kThreads = 3, kRequests = 6;
  std::vector<std::unique_ptr<RemoteTeacherClient>> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(NewClient());
    ASSERT_NE(clients.back(), nullptr);
  }
  std::atomic<int> answered{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, c, t] {
        RemoteTeacherClient* client = clients[c].get();
        std::vector<torch::Tensor> inputs;
        std::vector<double> temperatures;
        std::vector<RemoteTeacherClient::AnswerFuture> futures;
        for (int i = 0; i < kRequests; ++i) {
          inputs.push_back(torch::randn({1 + (c + t + i) % 8, 1, 28, 28}));
          temperatures.push_back(1.0 + (i % 3));
          futures.push_back(client->Send(inputs.back(), temperatures.back()));
        }
        for (int i = 0; i < kRequests; ++i) {
          absl::StatusOr<Answer> answer = client->Wait(futures[i]);
          if (!answer.ok()) {
            ADD_FAILURE() << "client " << c << " thread " << t << ": " << answer.status();
            continue;
          }
          absl::StatusOr<torch::Tensor> expected = native_->LogProbs(inputs[i], temperatures[i]);
          if (!expected.ok() || !answer->log_probs.sizes().equals(expected->sizes()) ||
              MaxAbsDiff(answer->log_probs, *expected) > 1e-5) {
            ADD_FAILURE() << "client " << c << " thread " << t << " request " << i
                          << " got another answer";
            continue;
          }
          ++answered;
        }
      });
    }
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(answered.load(), kClients * kThreads * kRequests);
  Histogram::Snapshot snapshot = batch_requests->snapshot();
  EXPECT_GT(snapshot.sum, static_cast<double>(snapshot.count));
  EXPECT_EQ(snapshot.sum, 4.0 + kClients * kThreads * kRequests);
  EXPECT_TRUE(Eventually([&] { return InFlight() == 0; }));
}

// --- 4. Validation -------------------------------------------------------------

TEST_F(TeacherServerTest, MalformedRequestsAreAnsweredAndTheStreamCarriesOn) {
  ASSERT_TRUE(StartServer());
  RawStream stream(PlainChannel(server_->port()));
  RawStream other(PlainChannel(server_->port()));
  // The other stream is open and working before the bad requests.
  torch::Tensor other_x = Images(2);
  ASSERT_TRUE(other.Write(Request(1, other_x)));
  {
    std::optional<v1::DistillResponse> r = other.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->error_code(), 0) << r->error_message();
  }

  struct Bad {
    std::string name;
    std::vector<v1::DistillRequest> parts;
    std::string what;
  };
  std::vector<Bad> bad;
  bad.push_back({"wrong shape",
                 {Request(10, torch::randn({2, 784}))},
                 "inputs have shape [2,784], expected [rows,1,28,28]"});
  {
    torch::Tensor x = Images(3);
    x.view({3, 784})[1][5] = std::numeric_limits<float>::quiet_NaN();
    bad.push_back({"NaN input", {Request(11, x)}, "input row 1 element 5 is not finite"});
  }
  bad.push_back({"temperature 0", {Request(12, Images(1), 0.0)}, "temperature 0 is not in ["});
  bad.push_back({"top_k too big",
                 {Request(13, Images(1), 1.0, {v1::OUTPUT_TOP_K, 11, v1::DTYPE_FLOAT32})},
                 "top_k 11 is not in [1, 10]"});
  bad.push_back({"unknown hidden layer",
                 {Request(14, Images(1), 1.0, {}, {"fc9"})},
                 "hidden layer 'fc9' is not exposed by this teacher; it exposes: fc0"});
  {
    // One row per part: part 0, then part 2 where part 1 belongs.
    std::vector<v1::DistillRequest> parts =
        EncodeRequest(15, Images(3), 1.0, OutputSpec(), {}, torch::Tensor(), 4096 + 784 * 4);
    ASSERT_EQ(parts.size(), 3u);
    bad.push_back({"out-of-order part",
                   {parts[0], parts[2]},
                   "part 2 arrived where part 1 of 3 was expected"});
    bad.push_back({"part without part 0", {parts[1]}, "part 1 arrived without part 0"});
  }
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.name);
    ASSERT_TRUE(stream.WriteAll(b.parts));
    std::optional<v1::DistillResponse> r = stream.Read();
    ASSERT_TRUE(r.has_value());
    const uint64_t sequence = b.parts[0].sequence();
    EXPECT_EQ(r->sequence(), sequence);
    EXPECT_EQ(r->error_code(), kInvalidArgument);
    EXPECT_THAT(r->error_message(), HasSubstr(absl::StrCat("request ", sequence, ": ")));
    EXPECT_THAT(r->error_message(), HasSubstr(b.what));
    EXPECT_FALSE(r->has_log_probs());
  }

  // The same stream still answers a valid request, and so does the other.
  torch::Tensor x = Images(3);
  ASSERT_TRUE(stream.Write(Request(20, x, 2.0)));
  absl::StatusOr<Answer> answer = Assemble(stream.ReadAnswer());
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_LE(MaxAbsDiff(answer->log_probs, Expected(x, 2.0)), 1e-6);
  ASSERT_TRUE(other.Write(Request(2, other_x, 3.0)));
  answer = Assemble(other.ReadAnswer());
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_LE(MaxAbsDiff(answer->log_probs, Expected(other_x, 3.0)), 1e-6);
  EXPECT_TRUE(stream.Finish().ok());
  EXPECT_TRUE(other.Finish().ok());
}

// --- 5. Limits -----------------------------------------------------------------

TEST_F(TeacherServerTest, StreamsBeyondMaxStreamsAreRefused) {
  TeacherServer::Options options;
  options.max_streams = 1;
  ASSERT_TRUE(StartServer(options));
  RawStream first(PlainChannel(server_->port()));
  ASSERT_TRUE(first.Write(Request(1, Images(1))));
  ASSERT_TRUE(first.Read().has_value());  // its handler is running

  RawStream second(PlainChannel(server_->port()));
  EXPECT_FALSE(second.Read().has_value());
  grpc::Status status = second.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("already serves 1 streams, its limit"));

  // The first stream is unaffected; once it closes another may open.
  ASSERT_TRUE(first.Write(Request(2, Images(1))));
  std::optional<v1::DistillResponse> r = first.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->error_code(), 0) << r->error_message();
  EXPECT_TRUE(first.Finish().ok());
  RawStream third(PlainChannel(server_->port()));
  ASSERT_TRUE(third.Write(Request(3, Images(1))));
  r = third.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->error_code(), 0) << r->error_message();
}

TEST_F(TeacherServerTest, ClientRefusedAStreamBacksOffAndGivesUp) {
  TeacherServer::Options options;
  options.max_streams = 1;
  ASSERT_TRUE(StartServer(options));
  auto holder = std::make_unique<RawStream>(PlainChannel(server_->port()));
  ASSERT_TRUE(holder->Write(Request(1, Images(1))));
  ASSERT_TRUE(holder->Read().has_value());  // holds the only stream

  // GetInfo works, but every Distill stream is refused: the client retries
  // with backoff (not in a tight loop) and fails the request after
  // reconnect_timeout with the server's reason.
  RemoteTeacherClient::Options client_options = ClientOptions();
  client_options.reconnect_timeout = absl::Seconds(1);
  std::unique_ptr<RemoteTeacherClient> client = NewClient(client_options);
  ASSERT_NE(client, nullptr);
  absl::StatusOr<torch::Tensor> refused = client->LogProbs(Images(1), 1.0);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("already serves 1 streams"));
  EXPECT_LT(client->stats().reconnects, 50);

  // Once the stream is free the same client is served.
  EXPECT_TRUE(holder->Finish().ok());
  holder.reset();
  torch::Tensor x = Images(2);
  absl::StatusOr<torch::Tensor> served = client->LogProbs(x, 1.0);
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_LE(MaxAbsDiff(*served, Expected(x, 1.0)), 1e-6);
}

TEST_F(TeacherServerTest, RequestsBeyondMaxInFlightPerStreamAreRefused) {
  TeacherServer::Options options;
  options.max_in_flight_per_stream = 1;
  ASSERT_TRUE(StartServer(options));
  RawStream stream(PlainChannel(server_->port()));
  const int warm = gate_->entered();
  gate_->Close();
  torch::Tensor x = Images(2);
  ASSERT_TRUE(stream.Write(Request(1, x)));
  ASSERT_TRUE(gate_->WaitEntered(warm + 1));
  ASSERT_TRUE(stream.Write(Request(2, Images(1))));
  ASSERT_TRUE(stream.Write(Request(3, Images(1))));
  for (uint64_t sequence : {2u, 3u}) {
    std::optional<v1::DistillResponse> r = stream.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->sequence(), sequence);
    EXPECT_EQ(r->error_code(), kResourceExhausted);
    EXPECT_THAT(r->error_message(),
                HasSubstr(absl::StrCat("request ", sequence,
                                       ": this stream already has 1 requests in flight")));
  }
  gate_->Open();
  std::vector<v1::DistillResponse> responses = stream.ReadAnswer();
  ASSERT_FALSE(responses.empty());
  EXPECT_EQ(responses[0].sequence(), 1u);
  absl::StatusOr<Answer> answer = Assemble(responses);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_LE(MaxAbsDiff(answer->log_probs, Expected(x, 1.0)), 1e-6);
}

TEST_F(TeacherServerTest, ClientKeepsWithinTheServersInFlightLimit) {
  TeacherServer::Options options;
  options.max_in_flight_per_stream = 2;
  ASSERT_TRUE(StartServer(options));
  std::unique_ptr<RemoteTeacherClient> client = NewClient();
  ASSERT_NE(client, nullptr);
  const int warm = gate_->entered();
  gate_->Close();
  // Two requests fill the stream's allowance; a third Send must wait for
  // room instead of sending and being refused RESOURCE_EXHAUSTED.
  std::vector<torch::Tensor> inputs = {Images(1), Images(2), Images(3)};
  std::vector<RemoteTeacherClient::AnswerFuture> futures;
  futures.push_back(client->Send(inputs[0], 1.0));
  futures.push_back(client->Send(inputs[1], 1.0));
  ASSERT_TRUE(gate_->WaitEntered(warm + 1));
  std::thread third([&] { futures.push_back(client->Send(inputs[2], 1.0)); });
  gate_->Open();
  third.join();
  for (size_t i = 0; i < futures.size(); ++i) {
    absl::StatusOr<Answer> answer = client->Wait(futures[i]);
    ASSERT_TRUE(answer.ok()) << "request " << i << ": " << answer.status();
    EXPECT_LE(MaxAbsDiff(answer->log_probs, Expected(inputs[i], 1.0)), 1e-5);
  }
}

TEST_F(TeacherServerTest, QueueAndRowLimitsAreEnforced) {
  TeacherServer::Options options;
  options.batcher.max_queue_rows = 8;
  options.max_rows_per_request = 16;
  ASSERT_TRUE(StartServer(options));
  RawStream stream(PlainChannel(server_->port()));

  // More rows than a request may hold.
  ASSERT_TRUE(stream.Write(Request(1, Images(17))));
  std::optional<v1::DistillResponse> r = stream.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->sequence(), 1u);
  EXPECT_EQ(r->error_code(), kInvalidArgument);
  EXPECT_THAT(r->error_message(), HasSubstr("request 1: a request of 17 rows is not in [1, 16]"));
  ASSERT_TRUE(stream.Write(Request(4, Images(0))));
  r = stream.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->sequence(), 4u);
  EXPECT_EQ(r->error_code(), kInvalidArgument);
  EXPECT_THAT(r->error_message(), HasSubstr("request 4: a request of 0 rows is not in [1, 16]"));

  ASSERT_TRUE(stream.Write(Request(2, Images(9))));
  r = stream.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->sequence(), 2u);
  EXPECT_EQ(r->error_code(), kResourceExhausted);
  EXPECT_THAT(r->error_message(),
              HasSubstr("request 2: the teacher's queue holds 0 rows; 9 more would pass its limit "
                        "of 8"));

  torch::Tensor x = Images(8);
  ASSERT_TRUE(stream.Write(Request(3, x)));
  absl::StatusOr<Answer> answer = Assemble(stream.ReadAnswer());
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_LE(MaxAbsDiff(answer->log_probs, Expected(x, 1.0)), 1e-6);
  EXPECT_TRUE(Eventually([&] { return InFlight() == 0; }));
}

// --- 6. Cancellation -------------------------------------------------------------

TEST_F(TeacherServerTest, CancelledStreamReleasesItsRequests) {
  ASSERT_TRUE(StartServer());
  {
    RawStream stream(PlainChannel(server_->port()));
    const int warm = gate_->entered();
    gate_->Close();
    ASSERT_TRUE(stream.Write(Request(1, Images(2))));
    ASSERT_TRUE(gate_->WaitEntered(warm + 1));
    for (uint64_t sequence = 2; sequence <= 4; ++sequence) {
      ASSERT_TRUE(stream.Write(Request(sequence, Images(2))));
    }
    EXPECT_TRUE(Eventually([&] { return InFlight() == 4; })) << InFlight();
    stream.context().TryCancel();
    grpc::Status status = stream.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
    gate_->Open();
    EXPECT_TRUE(Eventually([&] { return InFlight() == 0; })) << InFlight();
    EXPECT_TRUE(Eventually([&] { return GaugeValue("retort_teacher_open_streams") == 0; }));
  }
  // The server serves others.
  std::unique_ptr<RemoteTeacherClient> client = NewClient();
  ASSERT_NE(client, nullptr);
  torch::Tensor x = Images(3);
  absl::StatusOr<torch::Tensor> remote = client->LogProbs(x, 1.0);
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_LE(MaxAbsDiff(*remote, Expected(x, 1.0)), 1e-6);
}

TEST_F(TeacherServerTest, StreamPastItsDeadlineReleasesItsRequests) {
  ASSERT_TRUE(StartServer());
  {
    RawStream stream(PlainChannel(server_->port()), /*deadline=*/absl::Seconds(1));
    const int warm = gate_->entered();
    gate_->Close();
    ASSERT_TRUE(stream.Write(Request(1, Images(2))));
    ASSERT_TRUE(gate_->WaitEntered(warm + 1));
    stream.Write(Request(2, Images(2)));
    stream.Write(Request(3, Images(2)));
    grpc::Status status = stream.Finish();  // waits for the deadline
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
    gate_->Open();
    EXPECT_TRUE(Eventually([&] { return InFlight() == 0; })) << InFlight();
    EXPECT_TRUE(Eventually([&] { return GaugeValue("retort_teacher_open_streams") == 0; }));
  }
  std::unique_ptr<RemoteTeacherClient> client = NewClient();
  ASSERT_NE(client, nullptr);
  torch::Tensor x = Images(2);
  absl::StatusOr<torch::Tensor> remote = client->LogProbs(x, 1.0);
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_LE(MaxAbsDiff(*remote, Expected(x, 1.0)), 1e-6);
}

// --- 7. Health and drain -----------------------------------------------------------

HealthCheckResponse::ServingStatus CheckHealth(Health::Stub* stub, const std::string& service,
                                               grpc::Status* status = nullptr) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  grpc::Status s = stub->Check(&context, request, &response);
  if (status != nullptr) *status = s;
  return s.ok() ? response.status() : HealthCheckResponse::UNKNOWN;
}

TEST_F(TeacherServerTest, DrainTurnsHealthNotServingAndAnswersWhatWasAccepted) {
  ASSERT_TRUE(StartServer());
  std::unique_ptr<Health::Stub> health = Health::NewStub(PlainChannel(server_->port()));
  grpc::Status status;
  EXPECT_EQ(CheckHealth(health.get(), "", &status), HealthCheckResponse::SERVING)
      << status.error_message();
  EXPECT_EQ(CheckHealth(health.get(), "retort.v1.Teacher"), HealthCheckResponse::SERVING);
  EXPECT_EQ(GaugeValue("retort_teacher_up"), 1);

  std::unique_ptr<RemoteTeacherClient> client = NewClient();
  ASSERT_NE(client, nullptr);
  const int warm = gate_->entered();
  gate_->Close();
  torch::Tensor x = Images(3);
  RemoteTeacherClient::AnswerFuture held = client->Send(x, 2.0);
  ASSERT_TRUE(gate_->WaitEntered(warm + 1));

  std::atomic<bool> drained{false};
  std::thread drainer([&] { drained = server_->Drain(kBound); });
  EXPECT_TRUE(Eventually([&] {
    return CheckHealth(health.get(), "") == HealthCheckResponse::NOT_SERVING &&
           CheckHealth(health.get(), "retort.v1.Teacher") == HealthCheckResponse::NOT_SERVING;
  }));
  // New streams are refused (once the service has seen the drain begin).
  grpc::Status refused;
  EXPECT_TRUE(Eventually([&] {
    RawStream stream(PlainChannel(server_->port()));
    refused = stream.Finish();
    return refused.error_code() == grpc::StatusCode::UNAVAILABLE;
  })) << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("draining"));
  // New requests on an open stream are refused too.
  absl::StatusOr<Answer> late = client->Wait(client->Send(Images(1), 1.0));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnavailable) << late.status();
  EXPECT_THAT(late.status().message(), HasSubstr("draining"));

  // The held request is still answered, and then the drain completes.
  gate_->Open();
  absl::StatusOr<Answer> answer = client->Wait(held);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_LE(MaxAbsDiff(answer->log_probs, Expected(x, 2.0)), 1e-6);
  drainer.join();
  EXPECT_TRUE(drained.load());
  EXPECT_EQ(GaugeValue("retort_teacher_up"), 0);
  EXPECT_TRUE(server_->Drain(kBound));  // idempotent
}

TEST_F(TeacherServerTest, DrainTimesOutOnARequestThatDoesNotFinish) {
  TeacherServer::Options options;
  // A request stays queued behind the held one until the drain gives up.
  options.batcher.max_delay = absl::Seconds(60);
  options.batcher.max_batch_rows = 4;
  ASSERT_TRUE(StartServer(options));
  RawStream stream(PlainChannel(server_->port()));
  const int warm = gate_->entered();
  gate_->Close();
  ASSERT_TRUE(stream.Write(Request(1, Images(4))));
  ASSERT_TRUE(gate_->WaitEntered(warm + 1));
  ASSERT_TRUE(stream.Write(Request(2, Images(1))));
  EXPECT_TRUE(Eventually([&] { return GaugeValue("retort_teacher_queue_rows") == 1; }));
  gate_->Open();
  // Request 1 is answered; request 2 waits for a minute in the queue, longer
  // than the drain allows.
  std::vector<v1::DistillResponse> first = stream.ReadAnswer();
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(first[0].sequence(), 1u);
  // The drain gives up on it after its timeout and fails it, instead of
  // waiting for the batcher's minute.
  std::future<bool> drained =
      std::async(std::launch::async, [&] { return server_->Drain(absl::Milliseconds(300)); });
  ASSERT_EQ(drained.wait_for(absl::ToChronoSeconds(kBound)), std::future_status::ready)
      << "Drain(300ms) still waits for a request queued for a minute";
  EXPECT_FALSE(drained.get());
  // The queued request got an answer (UNAVAILABLE) or its stream was closed.
  if (std::optional<v1::DistillResponse> r = stream.Read()) {
    EXPECT_EQ(r->sequence(), 2u);
    EXPECT_EQ(r->error_code(), kUnavailable);
    EXPECT_THAT(r->error_message(), HasSubstr("shutting down"));
  }
}

TEST_F(TeacherServerTest, DestroyingTheServerDoesNotWaitForQueuedWork) {
  TeacherServer::Options options;
  options.batcher.max_delay = absl::Seconds(60);
  ASSERT_TRUE(StartServer(options));
  RawStream stream(PlainChannel(server_->port()));
  ASSERT_TRUE(stream.Write(Request(1, Images(1))));
  EXPECT_TRUE(Eventually([&] { return GaugeValue("retort_teacher_queue_rows") == 1; }));
  std::future<void> destroyed = std::async(std::launch::async, [&] { server_.reset(); });
  ASSERT_EQ(destroyed.wait_for(absl::ToChronoSeconds(kBound)), std::future_status::ready)
      << "~TeacherServer still waits for a request queued for a minute";
  grpc::Status status = stream.Finish();
  EXPECT_FALSE(status.ok());
}

// --- 9. Metrics ------------------------------------------------------------------

TEST_F(TeacherServerTest, MetricsAreServedInPrometheusFormat) {
  TeacherServer::Options options;
  options.metrics_listen = "127.0.0.1:0";
  ASSERT_TRUE(StartServer(options));
  ASSERT_GT(server_->metrics_port(), 0);
  std::unique_ptr<RemoteTeacherClient> client = NewClient();
  ASSERT_NE(client, nullptr);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(client->LogProbs(Images(5), 1.0).ok());
  RawStream stream(PlainChannel(server_->port()));
  ASSERT_TRUE(stream.Write(Request(1, Images(1), 0.0)));
  std::optional<v1::DistillResponse> r = stream.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->error_code(), kInvalidArgument);

  std::string response, body;
  // Counters are updated just after each answer is written: poll.
  EXPECT_TRUE(Eventually([&] {
    response = HttpGet(server_->metrics_port(), "/metrics");
    const size_t end = response.find("\r\n\r\n");
    body = end == std::string::npos ? "" : response.substr(end + 4);
    return absl::StrContains(body, "retort_teacher_requests_total{code=\"OK\"} 2\n") &&
           absl::StrContains(body,
                             "retort_teacher_requests_total{code=\"INVALID_ARGUMENT\"} 1\n") &&
           absl::StrContains(body, "retort_teacher_request_latency_seconds_count 2\n");
  })) << response;
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 200 OK")) << response;
  EXPECT_THAT(body, HasSubstr("# TYPE retort_teacher_requests_total counter"));
  EXPECT_THAT(body, HasSubstr("retort_teacher_rows_total 10\n"));
  EXPECT_THAT(body, HasSubstr("# TYPE retort_teacher_request_latency_seconds histogram"));
  EXPECT_THAT(body, HasSubstr("retort_teacher_request_latency_seconds_bucket{le=\"+Inf\"} 2\n"));
  EXPECT_THAT(body, HasSubstr("retort_teacher_request_latency_seconds_count 2\n"));
  EXPECT_THAT(body, HasSubstr("retort_teacher_batch_requests_bucket{le=\"1\"}"));
  EXPECT_THAT(body, HasSubstr("retort_teacher_up 1\n"));
  EXPECT_THAT(body, HasSubstr("retort_teacher_open_streams 2\n"));
  EXPECT_THAT(body, HasSubstr("retort_teacher_queue_rows 0\n"));

  const std::string dir = MakeTempDir("teacher_server_metrics");
  ASSERT_FALSE(dir.empty());
  const std::string path = dir + "/metrics.prom";
  {
    std::ofstream file(path, std::ios::binary);
    file << body;
    ASSERT_TRUE(file.good());
  }
  std::string output;
  const int code =
      RunShell(absl::StrCat("/usr/bin/promtool check metrics < '", path, "'"), &output);
  EXPECT_EQ(code, 0) << "promtool check metrics said:\n" << output << "\nfor:\n" << body;
  std::filesystem::remove_all(dir);
}

// --- 10, 11. Reconnects and fingerprints --------------------------------------------

// Creates a server on 127.0.0.1:<port>, retrying while the port is still
// being released.
absl::StatusOr<std::unique_ptr<TeacherServer>> CreateOnPort(int port,
                                                            std::shared_ptr<Teacher> teacher) {
  TeacherServer::Options options;
  options.listen = absl::StrCat("127.0.0.1:", port);
  absl::StatusOr<std::unique_ptr<TeacherServer>> server;
  for (int attempt = 0; attempt < 20; ++attempt) {
    server = TeacherServer::Create(options, teacher);
    if (server.ok() || server.status().code() != absl::StatusCode::kUnavailable) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return server;
}

TEST_F(TeacherServerTest, ClientSurvivesARestartButRefusesAnotherTeacher) {
  ASSERT_TRUE(StartServer());
  const int port = server_->port();
  std::unique_ptr<RemoteTeacherClient> client = NewClient();
  ASSERT_NE(client, nullptr);
  torch::Tensor x = Images(4);
  absl::StatusOr<torch::Tensor> before = client->LogProbs(x, 2.0);
  ASSERT_TRUE(before.ok()) << before.status();

  // The same weights come back on the same port.
  server_.reset();
  absl::StatusOr<std::unique_ptr<TeacherServer>> same =
      CreateOnPort(port, std::shared_ptr<Teacher>(NativeTeacher::FromModel(model_)));
  ASSERT_TRUE(same.ok()) << same.status();
  absl::StatusOr<torch::Tensor> after = client->LogProbs(x, 2.0);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_LE(MaxAbsDiff(*after, *before), 1e-6);
  EXPECT_GE(client->stats().reconnects, 1);

  // Other weights on that port: the client refuses to mix them in.
  same->reset();
  std::shared_ptr<models::Classifier> other_model = MakeModel(2);
  ASSERT_NE(other_model, nullptr);
  std::shared_ptr<Teacher> other(NativeTeacher::FromModel(other_model));
  ASSERT_NE(other->fingerprint().weights_sha256(), native_->fingerprint().weights_sha256());
  absl::StatusOr<std::unique_ptr<TeacherServer>> different = CreateOnPort(port, other);
  ASSERT_TRUE(different.ok()) << different.status();
  absl::StatusOr<torch::Tensor> mixed = client->LogProbs(x, 2.0);
  EXPECT_EQ(mixed.status().code(), absl::StatusCode::kFailedPrecondition) << mixed.status();
  EXPECT_THAT(mixed.status().message(), HasSubstr("refusing to mix teachers"));
  EXPECT_THAT(mixed.status().message(), HasSubstr(absl::StrCat("teacher at 127.0.0.1:", port)));
  EXPECT_THAT(mixed.status().message(),
              HasSubstr(other->fingerprint().weights_sha256().substr(0, 12)));
}

TEST_F(TeacherServerTest, CreateChecksTheExpectedFingerprintAndOutput) {
  ASSERT_TRUE(StartServer());
  RemoteTeacherClient::Options options = ClientOptions();
  options.expected_weights_sha256 = "abc";
  absl::StatusOr<std::unique_ptr<RemoteTeacherClient>> client =
      RemoteTeacherClient::Create(options);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kFailedPrecondition) << client.status();
  EXPECT_THAT(client.status().message(), HasSubstr(absl::StrCat("teacher at ", Address())));
  EXPECT_THAT(client.status().message(), HasSubstr("this run expects abc"));

  options.expected_weights_sha256 = native_->fingerprint().weights_sha256();
  EXPECT_TRUE(RemoteTeacherClient::Create(options).ok());

  options.output = {v1::OUTPUT_TOP_K, 11, v1::DTYPE_FLOAT16};
  client = RemoteTeacherClient::Create(options);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kFailedPrecondition) << client.status();
  EXPECT_THAT(client.status().message(), HasSubstr("--teacher_top_k=11 exceeds what teacher"));
}

// --- 8. Transport security ------------------------------------------------------------

class TeacherServerSecurityTest : public TeacherServerTest {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("teacher_server_certs"));
    absl::StatusOr<retort::testing::TestCerts> certs = retort::testing::GenerateTestCerts(*dir_);
    if (certs.ok()) {
      certs_ = new retort::testing::TestCerts(*std::move(certs));
    } else {
      std::fprintf(stderr, "GenerateTestCerts: %s\n",
                   std::string(certs.status().message()).c_str());
    }
  }
  static void TearDownTestSuite() {
    if (dir_ != nullptr && !dir_->empty()) std::filesystem::remove_all(*dir_);
    delete dir_;
    delete certs_;
    dir_ = nullptr;
    certs_ = nullptr;
  }
  void SetUp() override {
    TeacherServerTest::SetUp();
    ASSERT_NE(certs_, nullptr) << "could not make test certificates (see stderr)";
  }

  TeacherServer::Options TlsServer() const {
    TeacherServer::Options options;
    options.security.tls_cert_path = certs_->server_cert;
    options.security.tls_key_path = certs_->server_key;
    return options;
  }
  RemoteTeacherClient::Options TlsClient() const {
    RemoteTeacherClient::Options options = ClientOptions();
    options.channel.tls_ca_path = certs_->ca_cert;
    return options;
  }
  // A client that must fail: wait briefly.
  static absl::Status CreateFails(RemoteTeacherClient::Options options) {
    options.connect_timeout = absl::Seconds(2);
    absl::StatusOr<std::unique_ptr<RemoteTeacherClient>> client =
        RemoteTeacherClient::Create(std::move(options));
    return client.ok() ? absl::OkStatus() : client.status();
  }
  void ExpectServes(RemoteTeacherClient::Options options) {
    std::unique_ptr<RemoteTeacherClient> client = NewClient(std::move(options));
    ASSERT_NE(client, nullptr);
    torch::Tensor x = Images(2);
    absl::StatusOr<torch::Tensor> remote = client->LogProbs(x, 1.0);
    ASSERT_TRUE(remote.ok()) << remote.status();
    EXPECT_LE(MaxAbsDiff(*remote, Expected(x, 1.0)), 1e-6);
  }
  void ExpectUnavailable(RemoteTeacherClient::Options options) {
    absl::Status status = CreateFails(std::move(options));
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
    EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("teacher at ", Address())));
  }

  static std::string* dir_;
  static retort::testing::TestCerts* certs_;
};

std::string* TeacherServerSecurityTest::dir_ = nullptr;
retort::testing::TestCerts* TeacherServerSecurityTest::certs_ = nullptr;

TEST_F(TeacherServerSecurityTest, PlaintextServesPlaintextClients) {
  ASSERT_TRUE(StartServer());
  ExpectServes(ClientOptions());
}

TEST_F(TeacherServerSecurityTest, TlsServesClientsThatTrustItsCa) {
  ASSERT_TRUE(StartServer(TlsServer()));
  ExpectServes(TlsClient());
  {
    SCOPED_TRACE("plaintext client");
    ExpectUnavailable(ClientOptions());
  }
  {
    SCOPED_TRACE("client trusting another CA");
    RemoteTeacherClient::Options options = TlsClient();
    options.channel.tls_ca_path = certs_->other_ca_cert;
    ExpectUnavailable(options);
  }
}

TEST_F(TeacherServerSecurityTest, MutualTlsNeedsAClientCertificateFromItsCa) {
  TeacherServer::Options server = TlsServer();
  server.security.tls_client_ca_path = certs_->ca_cert;
  ASSERT_TRUE(StartServer(server));
  {
    SCOPED_TRACE("certificate from the right CA");
    RemoteTeacherClient::Options options = TlsClient();
    options.channel.tls_cert_path = certs_->client_cert;
    options.channel.tls_key_path = certs_->client_key;
    ExpectServes(options);
  }
  {
    SCOPED_TRACE("no certificate");
    ExpectUnavailable(TlsClient());
  }
  {
    SCOPED_TRACE("certificate from another CA");
    RemoteTeacherClient::Options options = TlsClient();
    options.channel.tls_cert_path = certs_->other_client_cert;
    options.channel.tls_key_path = certs_->other_client_key;
    ExpectUnavailable(options);
  }
}

TEST_F(TeacherServerSecurityTest, BearerTokenIsRequired) {
  TeacherServer::Options server = TlsServer();
  server.security.auth_token = "s3cret-token";
  ASSERT_TRUE(StartServer(server));
  {
    SCOPED_TRACE("right token");
    RemoteTeacherClient::Options options = TlsClient();
    options.channel.auth_token = "s3cret-token";
    ExpectServes(options);
  }
  {
    SCOPED_TRACE("wrong token");
    RemoteTeacherClient::Options options = TlsClient();
    options.channel.auth_token = "s3cret-tokex";
    absl::Status status = CreateFails(options);
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << status;
    EXPECT_THAT(status.message(), HasSubstr("the bearer token is not valid"));
    EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("teacher at ", Address())));
  }
  {
    SCOPED_TRACE("no token");
    absl::Status status = CreateFails(TlsClient());
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << status;
    EXPECT_THAT(status.message(), HasSubstr("requires a bearer token"));
  }
  {
    SCOPED_TRACE("Distill checks the token too");
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = retort::testing::ReadFileOrDie(certs_->ca_cert);
    RawStream stream(grpc::CreateChannel(Address(), grpc::SslCredentials(ssl)), kBound,
                     "Bearer wrong");
    stream.Write(Request(1, Images(1)));
    grpc::Status status = stream.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_THAT(status.error_message(), HasSubstr("the bearer token is not valid"));
  }
}

TEST_F(TeacherServerSecurityTest, TokenOverPlaintextNeedsExplicitConsent) {
  TeacherServer::Options server;
  server.security.auth_token = "t0ken";
  absl::StatusOr<std::unique_ptr<TeacherServer>> refused = TeacherServer::Create(server, gate_);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("--allow_insecure_token"));

  client::TeacherChannelOptions channel;
  channel.auth_token = "t0ken";
  absl::StatusOr<std::shared_ptr<grpc::Channel>> refused_channel =
      client::CreateTeacherChannel("127.0.0.1:1", channel);
  EXPECT_EQ(refused_channel.status().code(), absl::StatusCode::kFailedPrecondition)
      << refused_channel.status();
  EXPECT_THAT(refused_channel.status().message(), HasSubstr("--teacher_insecure_token"));

  server.security.allow_insecure_token = true;
  ASSERT_TRUE(StartServer(server));
  RemoteTeacherClient::Options options = ClientOptions();
  options.channel.auth_token = "t0ken";
  options.channel.allow_insecure_token = true;
  ExpectServes(options);
}

TEST_F(TeacherServerSecurityTest, InconsistentTlsOptionsAreRefused) {
  TeacherServer::Options server;
  server.security.tls_client_ca_path = certs_->ca_cert;
  absl::Status status = TeacherServer::Create(server, gate_).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("--tls_client_ca (mutual TLS) needs TLS"));

  server = TlsServer();
  server.security.tls_key_path = *dir_ + "/missing.key";
  status = TeacherServer::Create(server, gate_).status();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("--tls_key"));
  EXPECT_THAT(status.message(), HasSubstr("missing.key"));
}

}  // namespace
}  // namespace retort::teacher
