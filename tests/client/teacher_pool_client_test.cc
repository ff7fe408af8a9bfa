// Tests of how the trainer reaches a pool of teachers:
//
//   - EndpointResolver: static lists (sorted, deduplicated), dns:/// targets,
//     and the INVALID_ARGUMENT / UNAVAILABLE errors for bad or unknown names.
//   - TeacherPoolClient against real TeacherServers on 127.0.0.1 (in this
//     process): work spread over deterministic teachers with bit-identical
//     answers, failover when a teacher dies, drains or stops serving with
//     requests in its queue, refusal of a teacher with other weights,
//     --teacher_wait, and teachers joining and leaving through a
//     FakeEndpointResolver.
//
// Every wait is bounded (kBound); no test asserts on how long anything took.
// A pool that stops answering fails its test and is abandoned (leaked, with
// its servers) so the rest of the suite still runs. POOL_VERBOSE=1 in the
// environment makes the pools log their endpoint changes to stderr.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <grpc/grpc.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/endpoint_resolver.h"
#include "client/teacher_client.h"
#include "client/teacher_pool_client.h"
#include "data/augment.h"
#include "data/dataset.h"
#include "data/sampler.h"
#include "models/classifier.h"
#include "teacher/native_teacher.h"
#include "teacher/server/teacher_server.h"
#include "teacher/teacher.h"
#include "tests/client/fake_endpoint_resolver.h"
#include "tests/client/fake_teacher_client.h"
#include "tests/teacher/test_teachers.h"

namespace retort::client {
namespace {

using teacher::TeacherServer;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Keeps gRPC initialized for the whole run (see teacher_server_test.cc: the
// last gRPC object destroyed otherwise runs grpc_shutdown, which can stall).
class GrpcEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { grpc_init(); }
};
::testing::Environment* const kGrpcEnvironment =
    ::testing::AddGlobalTestEnvironment(new GrpcEnvironment);

// The bound on every wait in this file (a failing test fails, never hangs).
constexpr absl::Duration kBound = absl::Seconds(15);
constexpr double kTemperature = 2.0;

// Polls `condition` every few milliseconds for up to `timeout`.
using testutil::Images;
using testutil::MakeModel;
bool Eventually(const std::function<bool()>& condition, absl::Duration timeout = kBound) {
  return testutil::Eventually(condition, timeout);
}

// A port on 127.0.0.1 that nothing listens on (bound, then released).
int UnusedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = 0;
  ::inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  socklen_t length = sizeof(address);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

// A teacher whose every Forward takes at least `delay`, so requests stay in
// flight long enough to kill or drain a server under them.
class SlowTeacher : public teacher::Teacher {
 public:
  SlowTeacher(std::shared_ptr<teacher::Teacher> inner, absl::Duration delay)
      : inner_(std::move(inner)), delay_(delay) {}

  const v1::TeacherFingerprint& fingerprint() const override { return inner_->fingerprint(); }
  int64_t max_batch() const override { return inner_->max_batch(); }
  absl::StatusOr<teacher::TeacherOutput> Forward(
      const torch::Tensor& inputs, const std::vector<std::string>& hidden_layers) override {
    absl::SleepFor(delay_);
    return inner_->Forward(inputs, hidden_layers);
  }

 private:
  const std::shared_ptr<teacher::Teacher> inner_;
  const absl::Duration delay_;
};

// A teacher whose Forward blocks while its gate is closed (for at most 30 s,
// so a broken test cannot hang), so requests stay in flight until the test
// lets them go.
class GatedTeacher : public teacher::Teacher {
 public:
  explicit GatedTeacher(std::shared_ptr<teacher::Teacher> inner) : inner_(std::move(inner)) {}

  const v1::TeacherFingerprint& fingerprint() const override { return inner_->fingerprint(); }
  int64_t max_batch() const override { return inner_->max_batch(); }
  absl::StatusOr<teacher::TeacherOutput> Forward(
      const torch::Tensor& inputs, const std::vector<std::string>& hidden_layers) override {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&open_), absl::Seconds(30));
    }
    return inner_->Forward(inputs, hidden_layers);
  }

  void Close() {
    absl::MutexLock lock(&mu_);
    open_ = false;
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }

 private:
  const std::shared_ptr<teacher::Teacher> inner_;
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
};

// Runs `drain` on a detached thread; the future says when it returned (a
// Drain that never returns then fails a bounded wait instead of blocking).
std::future<bool> DrainDetached(TeacherServer* server, absl::Duration timeout) {
  auto drained = std::make_shared<std::promise<bool>>();
  std::future<bool> future = drained->get_future();
  std::thread([server, timeout, drained] { drained->set_value(server->Drain(timeout)); }).detach();
  return future;
}

// --- EndpointResolver ------------------------------------------------------------------

TEST(EndpointResolverTest, StaticListIsSortedAndDeduplicated) {
  absl::StatusOr<std::unique_ptr<EndpointResolver>> resolver =
      CreateEndpointResolver(" b.example:2, a.example:1 ,a.example:1,[::1]:3");
  ASSERT_TRUE(resolver.ok()) << resolver.status();
  EXPECT_FALSE((*resolver)->IsDynamic());
  EXPECT_EQ((*resolver)->Describe(), " b.example:2, a.example:1 ,a.example:1,[::1]:3");
  absl::StatusOr<std::vector<std::string>> addresses = (*resolver)->Resolve();
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  EXPECT_THAT(*addresses, ElementsAre("[::1]:3", "a.example:1", "b.example:2"));
}

TEST(EndpointResolverTest, BadTargetsAreInvalidArgumentsNamingTheFlag) {
  for (const std::string target : {"nohost", "h:0", "h:70000", "", "http://x:1", "dns:///a:1,b:2",
                                   ":5", "h:", "h:port", "a:1,nohost", "dns:///nohost", "::1:80"}) {
    SCOPED_TRACE(absl::StrCat("target '", target, "'"));
    absl::StatusOr<std::unique_ptr<EndpointResolver>> resolver =
        CreateEndpointResolver(target, "pool_teachers");
    EXPECT_EQ(resolver.status().code(), absl::StatusCode::kInvalidArgument) << resolver.status();
    EXPECT_THAT(resolver.status().message(), HasSubstr("--pool_teachers"));
  }
  // The flag defaults to --teachers.
  EXPECT_THAT(CreateEndpointResolver("nohost").status().message(), HasSubstr("--teachers"));
  // IPv6 addresses need brackets.
  EXPECT_THAT(CreateEndpointResolver("::1:80").status().message(), HasSubstr("[addr]:port"));
  absl::StatusOr<std::unique_ptr<EndpointResolver>> v6 = CreateEndpointResolver("[::1]:80");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_THAT(*(*v6)->Resolve(), ElementsAre("[::1]:80"));
}

TEST(EndpointResolverTest, DnsTargetResolvesLocalhostAndIsDynamic) {
  absl::StatusOr<std::unique_ptr<EndpointResolver>> resolver =
      CreateEndpointResolver("dns:///localhost:4321");
  ASSERT_TRUE(resolver.ok()) << resolver.status();
  EXPECT_TRUE((*resolver)->IsDynamic());
  EXPECT_EQ((*resolver)->Describe(), "dns:///localhost:4321");
  absl::StatusOr<std::vector<std::string>> addresses = (*resolver)->Resolve();
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  EXPECT_THAT(*addresses, Contains("127.0.0.1:4321"));
  EXPECT_TRUE(std::is_sorted(addresses->begin(), addresses->end()));
}

TEST(EndpointResolverTest, UnresolvableDnsNameIsUnavailable) {
  absl::StatusOr<std::unique_ptr<EndpointResolver>> resolver =
      CreateEndpointResolver("dns:///no-such-host.invalid:1");
  ASSERT_TRUE(resolver.ok()) << resolver.status();
  absl::StatusOr<std::vector<std::string>> addresses = (*resolver)->Resolve();
  EXPECT_EQ(addresses.status().code(), absl::StatusCode::kUnavailable) << addresses.status();
  EXPECT_THAT(addresses.status().message(), HasSubstr("no-such-host.invalid"));
}

TEST(EndpointResolverTest, FakeResolverAnswersWhatItWasLastSet) {
  FakeEndpointResolver resolver({"b:2", "a:1", "b:2"});
  EXPECT_TRUE(resolver.IsDynamic());
  EXPECT_THAT(*resolver.Resolve(), ElementsAre("a:1", "b:2"));
  resolver.Set({"c:3"});
  EXPECT_THAT(*resolver.Resolve(), ElementsAre("c:3"));
}

// --- TeacherPoolClient -----------------------------------------------------------------

// One request sent through the pool and what it was sent with.
struct Sent {
  torch::Tensor inputs;
  TeacherPoolClient::AnswerFuture future;
};

class TeacherPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(7);
    model_ = MakeModel(1);
    ASSERT_NE(model_, nullptr);
    reference_ = std::shared_ptr<teacher::Teacher>(teacher::NativeTeacher::FromModel(model_));
  }

  void TearDown() override {
    if (gate_ != nullptr) gate_->Open();
    if (abandoned_) {
      // Something in the pool stopped answering: destroying it (or a server
      // whose streams it holds) could hang the whole suite.
      (void)pool_.release();
      for (auto& server : servers_) (void)server.release();
      return;
    }
    pool_.reset();
    servers_.clear();
  }

  // Gives up on the pool and its servers after a failed bounded wait.
  void Abandon() {
    if (abandoned_) return;
    ADD_FAILURE() << "the pool stopped answering; abandoning it and its servers";
    abandoned_ = true;
  }

  // Starts a deterministic server whose teacher has the weights of `seed`
  // (each server gets its own model and teacher), each Forward taking at
  // least `delay`. Returns its index in servers_, or -1 with a failure.
  int StartServer(uint64_t seed = 1, absl::Duration delay = absl::ZeroDuration()) {
    std::shared_ptr<models::Classifier> model = MakeModel(seed);
    if (model == nullptr) return -1;
    std::shared_ptr<teacher::Teacher> native(teacher::NativeTeacher::FromModel(model));
    if (delay > absl::ZeroDuration()) native = std::make_shared<SlowTeacher>(native, delay);
    return StartServer(std::move(native));
  }

  // Starts a server with the weights of seed 1 behind gate_.
  int StartGatedServer() {
    std::shared_ptr<models::Classifier> model = MakeModel(1);
    if (model == nullptr) return -1;
    gate_ = std::make_shared<GatedTeacher>(
        std::shared_ptr<teacher::Teacher>(teacher::NativeTeacher::FromModel(model)));
    return StartServer(gate_);
  }

  int StartServer(std::shared_ptr<teacher::Teacher> teacher) {
    TeacherServer::Options options;
    options.batcher.deterministic = true;
    options.max_in_flight_per_stream = kInFlightLimit;
    absl::StatusOr<std::unique_ptr<TeacherServer>> server =
        TeacherServer::Create(std::move(options), std::move(teacher));
    if (!server.ok()) {
      ADD_FAILURE() << server.status();
      return -1;
    }
    servers_.push_back(*std::move(server));
    return static_cast<int>(servers_.size()) - 1;
  }

  std::string Address(int server) const {
    return absl::StrCat("127.0.0.1:", servers_[server]->port());
  }

  static TeacherPoolClient::Options PoolOptions(std::shared_ptr<EndpointResolver> resolver) {
    TeacherPoolClient::Options options;
    options.resolver = std::move(resolver);
    options.connect_timeout = absl::Seconds(20);
    options.teacher_wait = absl::Seconds(20);
    options.health_interval = absl::Milliseconds(100);
    options.health_timeout = absl::Milliseconds(500);
    options.resolve_interval = absl::Milliseconds(100);
    options.verbose = std::getenv("POOL_VERBOSE") != nullptr;
    return options;
  }

  // Static pool options over the given servers.
  TeacherPoolClient::Options StaticPoolOptions(const std::vector<int>& servers) const {
    std::vector<std::string> addresses;
    for (int server : servers) addresses.push_back(Address(server));
    absl::StatusOr<std::unique_ptr<EndpointResolver>> resolver =
        CreateEndpointResolver(absl::StrJoin(addresses, ","));
    EXPECT_TRUE(resolver.ok()) << resolver.status();
    return PoolOptions(resolver.ok() ? std::shared_ptr<EndpointResolver>(*std::move(resolver))
                                     : nullptr);
  }

  // Creates pool_; false (with a failure) if Create fails.
  bool CreatePool(TeacherPoolClient::Options options) {
    absl::StatusOr<std::unique_ptr<TeacherPoolClient>> pool =
        TeacherPoolClient::Create(std::move(options));
    if (!pool.ok()) {
      ADD_FAILURE() << pool.status();
      return false;
    }
    pool_ = *std::move(pool);
    return true;
  }

  // The pool's view of `address`; state "absent" when it is not in the pool.
  TeacherPoolClient::EndpointStatus Endpoint(const std::string& address) const {
    for (const TeacherPoolClient::EndpointStatus& e : pool_->endpoints()) {
      if (e.address == address) return e;
    }
    TeacherPoolClient::EndpointStatus absent;
    absent.address = address;
    absent.state = "absent";
    return absent;
  }

  bool WaitForState(const std::string& address, const std::string& state) {
    const bool reached = Eventually([&] { return Endpoint(address).state == state; });
    EXPECT_TRUE(reached) << address << " is " << Endpoint(address).state << " ("
                         << Endpoint(address).last_error << "), not " << state;
    return reached;
  }

  // After `count` requests were sent to a pool that had answered
  // `answered_before`: waits until every one of them is answered except those
  // held by `address` (behind its closed gate), and returns how many it holds
  // (at least one), or -1 with a failure.
  int WaitUntilOnlyHeldRemain(const std::string& address, int64_t answered_before, int count) {
    int64_t held = 0;
    const bool settled = Eventually([&] {
      const int64_t answered = pool_->stats().answered;  // read first: both only grow
      held = Endpoint(address).outstanding;
      return held > 0 && answered + held == answered_before + count;
    });
    EXPECT_TRUE(settled) << address << " holds " << held << "; answered "
                         << pool_->stats().answered - answered_before << " of " << count;
    return settled ? static_cast<int>(held) : -1;
  }

  // Sends `count` requests of 1..5 rows through SubmitAnswer.
  std::vector<Sent> SendMany(int count) {
    std::vector<Sent> sent;
    for (int i = 0; i < count; ++i) {
      torch::Tensor inputs = Images(1 + i % 5);
      sent.push_back({inputs, pool_->SubmitAnswer(inputs, kTemperature)});
    }
    return sent;
  }

  // Waits (up to kBound) for every answer; abandons the pool if one is late.
  bool WaitAll(const std::vector<Sent>& sent) {
    const absl::Time deadline = absl::Now() + kBound;
    for (size_t i = 0; i < sent.size(); ++i) {
      if (sent[i].future.wait_until(absl::ToChronoTime(deadline)) != std::future_status::ready) {
        ADD_FAILURE() << "request " << i << " of " << sent.size() << " unanswered after " << kBound
                      << "; stats: resent " << pool_->stats().resent << ", endpoints_down "
                      << pool_->stats().endpoints_down;
        Abandon();
        return false;
      }
    }
    return true;
  }

  // The teacher's own answer, computed in this process.
  torch::Tensor Expected(const torch::Tensor& inputs) {
    absl::StatusOr<torch::Tensor> log_probs = reference_->LogProbs(inputs, kTemperature);
    EXPECT_TRUE(log_probs.ok()) << log_probs.status();
    return log_probs.ok() ? *log_probs : torch::Tensor();
  }

  // Every request answered without error, bit-identical to the teacher.
  void ExpectAllCorrect(const std::vector<Sent>& sent) {
    for (size_t i = 0; i < sent.size(); ++i) {
      const absl::StatusOr<teacher::Answer>& answer = sent[i].future.get();
      ASSERT_TRUE(answer.ok()) << "request " << i << ": " << answer.status();
      EXPECT_TRUE(torch::equal(answer->log_probs, Expected(sent[i].inputs))) << "request " << i;
    }
  }

  static constexpr int kInFlightLimit = 4;  // each server's per-stream limit

  std::shared_ptr<models::Classifier> model_;
  std::shared_ptr<teacher::Teacher> reference_;  // the weights of seed 1
  std::vector<std::unique_ptr<TeacherServer>> servers_;
  std::shared_ptr<GatedTeacher> gate_;  // set by StartGatedServer
  std::unique_ptr<TeacherPoolClient> pool_;
  bool abandoned_ = false;
};

// Waits up to `timeout` for a Submit future (whose conversion may be deferred
// to the caller's wait, so it is waited for on another thread).
absl::StatusOr<torch::Tensor> GetWithin(const TeacherClient::LogProbsFuture& future,
                                        absl::Duration timeout) {
  auto result = std::make_shared<std::promise<absl::StatusOr<torch::Tensor>>>();
  std::future<absl::StatusOr<torch::Tensor>> got = result->get_future();
  std::thread([future, result] { result->set_value(future.get()); }).detach();
  if (got.wait_for(absl::ToChronoSeconds(timeout)) != std::future_status::ready) {
    return absl::DeadlineExceededError(
        absl::StrCat("no answer within ", absl::FormatDuration(timeout)));
  }
  return got.get();
}

TEST_F(TeacherPoolTest, TwoDeterministicTeachersShareTheWorkWithBitIdenticalAnswers) {
  const int a = StartServer(), b = StartServer();
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  ASSERT_EQ(servers_[a]->fingerprint().weights_sha256(),
            servers_[b]->fingerprint().weights_sha256());
  ASSERT_TRUE(CreatePool(StaticPoolOptions({a, b})));
  ASSERT_TRUE(WaitForState(Address(a), "serving"));
  ASSERT_TRUE(WaitForState(Address(b), "serving"));
  EXPECT_TRUE(pool_->info().limits().deterministic());
  absl::StatusOr<v1::TeacherFingerprint> fingerprint = pool_->Fingerprint();
  ASSERT_TRUE(fingerprint.ok()) << fingerprint.status();
  EXPECT_EQ(fingerprint->weights_sha256(), reference_->fingerprint().weights_sha256());

  // Many more requests than both servers take at once, through both calls.
  constexpr int kAnswers = 8 * kInFlightLimit;
  constexpr int kLogProbs = 2 * kInFlightLimit;
  std::vector<Sent> sent = SendMany(kAnswers);
  std::vector<torch::Tensor> inputs;
  std::vector<TeacherClient::LogProbsFuture> futures;
  for (int i = 0; i < kLogProbs; ++i) {
    inputs.push_back(Images(1 + i % 3));
    futures.push_back(pool_->Submit(inputs.back(), kTemperature));
  }
  ASSERT_TRUE(WaitAll(sent));
  ExpectAllCorrect(sent);
  for (int i = 0; i < kLogProbs; ++i) {
    absl::StatusOr<torch::Tensor> log_probs = GetWithin(futures[i], kBound);
    ASSERT_TRUE(log_probs.ok()) << "Submit " << i << ": " << log_probs.status();
    EXPECT_TRUE(torch::equal(*log_probs, Expected(inputs[i]))) << "Submit " << i;
  }
  absl::StatusOr<torch::Tensor> direct = pool_->LogProbs(inputs[0], kTemperature);
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_TRUE(torch::equal(*direct, Expected(inputs[0])));

  for (int server : {a, b}) {
    const TeacherPoolClient::EndpointStatus endpoint = Endpoint(Address(server));
    EXPECT_EQ(endpoint.state, "serving");
    EXPECT_GT(endpoint.answered, 0) << endpoint.address << " got no work";
  }
  const TeacherPoolClient::Stats stats = pool_->stats();
  EXPECT_EQ(stats.requests, kAnswers + kLogProbs + 1);
  EXPECT_EQ(stats.answered, kAnswers + kLogProbs + 1);
}

TEST_F(TeacherPoolTest, RequestsSurviveATeacherDyingUnderThem) {
  const int a = StartServer(1, absl::Milliseconds(10)), b = StartServer(1, absl::Milliseconds(10));
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  ASSERT_TRUE(CreatePool(StaticPoolOptions({a, b})));
  ASSERT_TRUE(WaitForState(Address(a), "serving"));
  ASSERT_TRUE(WaitForState(Address(b), "serving"));
  const std::string dying = Address(a);

  std::vector<Sent> sent = SendMany(12 * kInFlightLimit);
  ASSERT_TRUE(Eventually([&] { return Endpoint(dying).outstanding > 0; }));
  servers_[a].reset();  // at once: its streams are cancelled mid-request
  std::vector<Sent> after = SendMany(2 * kInFlightLimit);

  ASSERT_TRUE(WaitAll(sent));
  ASSERT_TRUE(WaitAll(after));
  ExpectAllCorrect(sent);
  ExpectAllCorrect(after);
  const TeacherPoolClient::Stats stats = pool_->stats();
  EXPECT_TRUE(stats.resent > 0 || stats.endpoints_down > 0)
      << "resent " << stats.resent << ", endpoints_down " << stats.endpoints_down;
  EXPECT_EQ(stats.answered, stats.requests);
  EXPECT_TRUE(Eventually([&] { return Endpoint(dying).state == "down"; })) << Endpoint(dying).state;
  EXPECT_EQ(Endpoint(Address(b)).state, "serving");
}

// With health checks far apart, only the broken stream can tell the pool
// that an idle teacher died: it must be taken out before the next request.
TEST_F(TeacherPoolTest, IdleTeacherThatDiesIsTakenOutByItsBrokenStream) {
  const int a = StartServer(), b = StartServer();
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  TeacherPoolClient::Options options = StaticPoolOptions({a, b});
  options.health_interval = absl::Hours(1);  // the first probe only
  ASSERT_TRUE(CreatePool(std::move(options)));
  ASSERT_TRUE(WaitForState(Address(a), "serving"));
  ASSERT_TRUE(WaitForState(Address(b), "serving"));
  std::vector<Sent> sent = SendMany(4 * kInFlightLimit);  // opens a stream to each
  ASSERT_TRUE(WaitAll(sent));
  ASSERT_GT(Endpoint(Address(a)).answered, 0);
  const std::string dying = Address(a);
  servers_[a].reset();
  ASSERT_TRUE(WaitForState(dying, "down"));
  EXPECT_THAT(Endpoint(dying).last_error, HasSubstr("stream ended"));
  std::vector<Sent> after = SendMany(2 * kInFlightLimit);
  ASSERT_TRUE(WaitAll(after));
  ExpectAllCorrect(after);
  EXPECT_EQ(pool_->stats().resent, 0);  // nothing was sent to the dead teacher
}

TEST_F(TeacherPoolTest, RequestsSurviveATeacherDrainingUnderThem) {
  const int a = StartServer(1, absl::Milliseconds(10)), b = StartServer(1, absl::Milliseconds(10));
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  ASSERT_TRUE(CreatePool(StaticPoolOptions({a, b})));
  ASSERT_TRUE(WaitForState(Address(a), "serving"));
  ASSERT_TRUE(WaitForState(Address(b), "serving"));
  const std::string draining = Address(a);

  std::vector<Sent> sent = SendMany(12 * kInFlightLimit);
  ASSERT_TRUE(Eventually([&] { return Endpoint(draining).outstanding > 0; }));
  std::future<bool> drained = DrainDetached(servers_[a].get(), kBound);
  std::vector<Sent> after = SendMany(2 * kInFlightLimit);

  const bool answered = WaitAll(sent) && WaitAll(after);
  if (drained.wait_for(absl::ToChronoSeconds(2 * kBound)) != std::future_status::ready) {
    ADD_FAILURE() << "Drain did not return";
    Abandon();
    return;
  }
  EXPECT_TRUE(drained.get()) << "Drain left requests unanswered";
  ASSERT_TRUE(answered);
  ExpectAllCorrect(sent);
  ExpectAllCorrect(after);
  EXPECT_EQ(pool_->stats().answered, pool_->stats().requests);
  EXPECT_TRUE(Eventually([&] { return Endpoint(draining).state == "down"; }))
      << Endpoint(draining).state;
}

// The teacher holding requests stops answering its health check while they
// are still in its queue: the pool takes it out of service (cancelling its
// stream with requests unanswered) and another teacher answers them.
TEST_F(TeacherPoolTest, RequestsHeldByATeacherThatStopsServingAreAnsweredElsewhere) {
  const int held = StartGatedServer(), other = StartServer();
  ASSERT_GE(held, 0);
  ASSERT_GE(other, 0);
  ASSERT_TRUE(CreatePool(StaticPoolOptions({held, other})));
  ASSERT_TRUE(WaitForState(Address(held), "serving"));
  ASSERT_TRUE(WaitForState(Address(other), "serving"));
  const std::string address = Address(held);

  gate_->Close();
  const int64_t answered_before = pool_->stats().answered;
  std::vector<Sent> sent = SendMany(4 * kInFlightLimit);
  // The held teacher keeps the requests it got; the other answers the rest.
  const int held_requests =
      WaitUntilOnlyHeldRemain(address, answered_before, static_cast<int>(sent.size()));
  ASSERT_GT(held_requests, 0);
  std::future<bool> drained = DrainDetached(servers_[held].get(), kBound);
  const bool answered = WaitAll(sent);
  gate_->Open();
  if (drained.wait_for(absl::ToChronoSeconds(2 * kBound)) != std::future_status::ready) {
    ADD_FAILURE() << "Drain did not return";
    Abandon();
    return;
  }
  ASSERT_TRUE(answered);
  ExpectAllCorrect(sent);
  const TeacherPoolClient::Stats stats = pool_->stats();
  EXPECT_GE(stats.resent, held_requests);
  EXPECT_GE(stats.endpoints_down, 1);
  EXPECT_EQ(stats.answered, stats.requests);
  EXPECT_EQ(Endpoint(address).state, "down");
  EXPECT_EQ(Endpoint(Address(other)).answered, static_cast<int64_t>(sent.size()));
}

TEST_F(TeacherPoolTest, RefusesATeacherWithOtherWeightsAndKeepsServingWithTheFirst) {
  const int same = StartServer(1), other = StartServer(2);
  ASSERT_GE(same, 0);
  ASSERT_GE(other, 0);
  const std::string other_sha = servers_[other]->fingerprint().weights_sha256();
  const std::string same_sha = servers_[same]->fingerprint().weights_sha256();
  ASSERT_NE(other_sha, same_sha);

  // The first teacher admitted sets the pool's fingerprint; the other joins
  // later and is refused.
  auto resolver = std::make_shared<FakeEndpointResolver>(std::vector<std::string>{Address(same)});
  ASSERT_TRUE(CreatePool(PoolOptions(resolver)));
  resolver->Set({Address(same), Address(other)});
  ASSERT_TRUE(WaitForState(Address(other), "refused"));

  std::vector<Sent> sent = SendMany(4 * kInFlightLimit);
  ASSERT_TRUE(WaitAll(sent));
  ExpectAllCorrect(sent);
  const TeacherPoolClient::EndpointStatus refused = Endpoint(Address(other));
  EXPECT_EQ(refused.state, "refused");
  EXPECT_EQ(refused.answered, 0);
  EXPECT_THAT(refused.last_error, HasSubstr(Address(other)));
  EXPECT_THAT(refused.last_error, HasSubstr(other_sha.substr(0, 12)));
  EXPECT_THAT(refused.last_error, HasSubstr(same_sha.substr(0, 12)));
  EXPECT_THAT(refused.last_error, HasSubstr("refusing"));
  EXPECT_EQ(Endpoint(Address(same)).answered, static_cast<int64_t>(sent.size()));
}

TEST_F(TeacherPoolTest, CreateFailsWhenTheOnlyTeacherHasUnexpectedWeights) {
  const int other = StartServer(2);
  ASSERT_GE(other, 0);
  TeacherPoolClient::Options options = StaticPoolOptions({other});
  options.endpoint.expected_weights_sha256 = reference_->fingerprint().weights_sha256();
  absl::StatusOr<std::unique_ptr<TeacherPoolClient>> pool = TeacherPoolClient::Create(options);
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kFailedPrecondition) << pool.status();
  EXPECT_THAT(pool.status().message(), HasSubstr(Address(other)));
}

TEST_F(TeacherPoolTest, RequestFailsAfterTeacherWaitWithNoTeacherLeft) {
  const int only = StartServer();
  ASSERT_GE(only, 0);
  const std::string address = Address(only);
  TeacherPoolClient::Options options = StaticPoolOptions({only});
  options.teacher_wait = absl::Seconds(1);
  ASSERT_TRUE(CreatePool(options));
  std::vector<Sent> before = SendMany(2);
  ASSERT_TRUE(WaitAll(before));
  ExpectAllCorrect(before);

  servers_[only].reset();
  ASSERT_TRUE(WaitForState(address, "down"));
  TeacherPoolClient::AnswerFuture late = pool_->SubmitAnswer(Images(2), kTemperature);
  if (late.wait_for(absl::ToChronoSeconds(kBound)) != std::future_status::ready) {
    Abandon();
    return;
  }
  const absl::StatusOr<teacher::Answer>& answer = late.get();
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kUnavailable) << answer.status();
  EXPECT_THAT(answer.status().message(), HasSubstr(address));
  EXPECT_THAT(answer.status().message(), HasSubstr("--teacher_wait"));
}

// A teacher that passes its health checks but refuses every stream (its one
// stream is taken) must not keep a request bouncing forever.
TEST_F(TeacherPoolTest, RequestThatKeepsFailingOnAHealthyLookingTeacherGivesUp) {
  TeacherServer::Options server_options;
  server_options.batcher.deterministic = true;
  server_options.max_streams = 1;
  absl::StatusOr<std::unique_ptr<TeacherServer>> server =
      TeacherServer::Create(server_options, reference_);
  ASSERT_TRUE(server.ok()) << server.status();
  servers_.push_back(*std::move(server));
  const std::string address = Address(0);
  // Another client holds the only stream.
  client::RemoteTeacherClient::Options holder_options;
  holder_options.address = address;
  absl::StatusOr<std::unique_ptr<client::RemoteTeacherClient>> holder =
      client::RemoteTeacherClient::Create(holder_options);
  ASSERT_TRUE(holder.ok()) << holder.status();
  ASSERT_TRUE((*holder)->Wait((*holder)->Send(Images(1), kTemperature)).ok());

  TeacherPoolClient::Options options = StaticPoolOptions({0});
  options.teacher_wait = absl::Seconds(1);
  ASSERT_TRUE(CreatePool(options));
  TeacherPoolClient::AnswerFuture refused = pool_->SubmitAnswer(Images(2), kTemperature);
  if (refused.wait_for(absl::ToChronoSeconds(kBound)) != std::future_status::ready) {
    Abandon();
    return;
  }
  const absl::StatusOr<teacher::Answer>& answer = refused.get();
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kUnavailable) << answer.status();
  EXPECT_THAT(answer.status().message(), HasSubstr("--teacher_wait"));
  EXPECT_THAT(answer.status().message(), HasSubstr(address));
  EXPECT_GE(pool_->stats().resent, 1);
}

TEST_F(TeacherPoolTest, CreateFailsWhenNothingListens) {
  const int port = UnusedPort();
  ASSERT_GT(port, 0);
  const std::string address = absl::StrCat("127.0.0.1:", port);
  absl::StatusOr<std::unique_ptr<EndpointResolver>> resolver = CreateEndpointResolver(address);
  ASSERT_TRUE(resolver.ok()) << resolver.status();
  TeacherPoolClient::Options options = PoolOptions(*std::move(resolver));
  options.connect_timeout = absl::Seconds(1);
  absl::StatusOr<std::unique_ptr<TeacherPoolClient>> pool = TeacherPoolClient::Create(options);
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kUnavailable) << pool.status();
  EXPECT_THAT(pool.status().message(), HasSubstr(address));
}

TEST_F(TeacherPoolTest, TeachersJoinAndLeaveThroughTheResolver) {
  const int a = StartGatedServer(), b = StartServer();
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  const std::string first = Address(a), second = Address(b);
  auto resolver = std::make_shared<FakeEndpointResolver>(std::vector<std::string>{first});
  ASSERT_TRUE(CreatePool(PoolOptions(resolver)));
  EXPECT_EQ(Endpoint(second).state, "absent");

  // B joins and gets work.
  resolver->Set({first, second});
  ASSERT_TRUE(WaitForState(second, "serving"));
  std::vector<Sent> joined = SendMany(6 * kInFlightLimit);
  ASSERT_TRUE(WaitAll(joined));
  ExpectAllCorrect(joined);
  EXPECT_GT(Endpoint(first).answered, 0);
  EXPECT_GT(Endpoint(second).answered, 0);

  // A leaves while holding requests (its gate closed); B answers them.
  gate_->Close();
  const int64_t answered_before = pool_->stats().answered;
  std::vector<Sent> leaving = SendMany(4 * kInFlightLimit);
  const int held_requests =
      WaitUntilOnlyHeldRemain(first, answered_before, static_cast<int>(leaving.size()));
  ASSERT_GT(held_requests, 0);
  resolver->Set({second});
  ASSERT_TRUE(WaitForState(first, "absent"));
  ASSERT_TRUE(WaitAll(leaving));
  ExpectAllCorrect(leaving);
  EXPECT_GE(pool_->stats().resent, held_requests);

  // Then A goes away for good; the pool carries on with B.
  gate_->Open();
  servers_[a].reset();
  std::vector<Sent> after = SendMany(4 * kInFlightLimit);
  ASSERT_TRUE(WaitAll(after));
  ExpectAllCorrect(after);
  EXPECT_EQ(Endpoint(second).state, "serving");
  EXPECT_EQ(pool_->endpoints().size(), 1u);
  EXPECT_EQ(pool_->stats().answered, pool_->stats().requests);
}

}  // namespace
}  // namespace retort::client
