// TeacherPoolClient: a TeacherClient over a pool of teacher servers that
// survives teachers dying, hanging, draining, and coming and going.
//
// Endpoints come from an EndpointResolver (a static list or a DNS name,
// re-resolved every `resolve_interval`). Each endpoint is one
// RemoteTeacherClient stream (in its fail-fast mode). A prober thread checks
// every endpoint with the standard gRPC health service every
// `health_interval`; a teacher is given work only while it answers SERVING
// and its fingerprint matches the pool's (the first teacher admitted, or
// `expected_weights_sha256`). A mismatching teacher is refused with a message
// naming it and the two fingerprints.
//
// Requests go to the serving teacher with the least outstanding work (within
// its per-stream in-flight limit) or wait in a queue. When a teacher's stream
// breaks (the process died; keepalive found it frozen), it starts draining,
// fails its health check, or leaves DNS, its unanswered requests are re-sent
// to the others; a teacher holding a request longer than `attempt_timeout`
// counts as hung and is treated the same. The first answer wins and later
// ones are dropped, so no result is used twice. Once the pool has had no
// serving teacher for `teacher_wait`, waiting requests (and new ones, until a
// teacher serves again) fail with UNAVAILABLE naming every endpoint and why.
//
// Answers are deterministic per request when the teachers run in
// deterministic mode with the same weights, whichever teacher answers.
//
// Thread-safe.
#ifndef RETORT_CLIENT_TEACHER_POOL_CLIENT_H_
#define RETORT_CLIENT_TEACHER_POOL_CLIENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/endpoint_resolver.h"
#include "client/remote_teacher_client.h"
#include "client/teacher_client.h"

namespace retort::client {

class TeacherPoolClient : public TeacherClient {
 public:
  struct Options {
    std::shared_ptr<EndpointResolver> resolver;
    // Per-endpoint settings (address is filled in per endpoint): channel
    // security and keepalive, output spec, expected weights, message size.
    RemoteTeacherClient::Options endpoint;
    absl::Duration connect_timeout = absl::Seconds(60);  // Create: first teacher admitted
    absl::Duration teacher_wait = absl::Minutes(5);      // a request without any teacher
    absl::Duration attempt_timeout = absl::Seconds(60);  // then also sent elsewhere
    absl::Duration health_interval = absl::Seconds(1);
    absl::Duration health_timeout = absl::Seconds(1);
    absl::Duration resolve_interval = absl::Seconds(5);
    bool verbose = true;  // endpoint state changes to stderr
  };

  struct Stats {
    int64_t requests = 0;
    int64_t answered = 0;
    int64_t resent = 0;                           // attempts beyond the first
    int64_t late_answers = 0;                     // answers to requests already answered (dropped)
    int64_t endpoints_down = 0;                   // times an endpoint was taken out of service
    absl::Time last_down = absl::InfinitePast();  // when the last one was
    absl::Time last_resend = absl::InfinitePast();  // when work was last re-sent
  };

  struct EndpointStatus {
    std::string address;
    std::string state;  // probing, serving, down, refused
    int64_t outstanding = 0;
    int64_t answered = 0;
    std::string last_error;
  };

  // Resolves the endpoints and waits up to connect_timeout for a teacher to
  // be admitted. UNAVAILABLE naming every endpoint and its error when none
  // is; FAILED_PRECONDITION when every reachable one was refused.
  static absl::StatusOr<std::unique_ptr<TeacherPoolClient>> Create(Options options);
  ~TeacherPoolClient() override;

  absl::StatusOr<v1::TeacherFingerprint> Fingerprint() override;
  TargetsFuture SubmitTargets(const TeacherClient::Request& request) override;

  using AnswerFuture = RemoteTeacherClient::AnswerFuture;
  // The decoded answer itself (log-probabilities, top-k, hidden states).
  AnswerFuture SubmitAnswer(const torch::Tensor& inputs, double temperature,
                            const std::vector<std::string>& hidden_layers = {},
                            const torch::Tensor& query_ids = {});

  // The GetInfo answer of the first teacher admitted.
  v1::GetInfoResponse info() const;
  Stats stats() const;
  std::vector<EndpointStatus> endpoints() const;

 private:
  enum class State { kProbing, kServing, kDown, kRefused };
  struct PendingRequest;
  struct Endpoint;

  explicit TeacherPoolClient(Options options);
  // How long a probe waits for a new endpoint's GetInfo.
  absl::Duration ProbeConnectTimeout() const;
  void ProberLoop();
  void DispatcherLoop();
  // Brings the endpoint set in line with the resolver.
  void Resolve();
  // Health-checks (and first connects) one endpoint, outside the lock.
  void Probe(const std::shared_ptr<Endpoint>& endpoint);
  // Takes an endpoint out of service and queues its outstanding requests
  // again. Returns false if it was already out.
  bool MarkDown(Endpoint& endpoint, State state, const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Requeue(const std::shared_ptr<PendingRequest>& request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Picks a serving endpoint with room, or null.
  std::shared_ptr<Endpoint> PickEndpoint() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends queued requests while endpoints have room; fails those that waited
  // longer than teacher_wait; re-sends attempts past attempt_timeout.
  void DispatchQueued() ABSL_LOCKS_EXCLUDED(mu_);
  void OnAnswer(const std::shared_ptr<Endpoint>& endpoint,
                const std::shared_ptr<PendingRequest>& request, uint64_t attempt,
                absl::StatusOr<teacher::Answer> answer) ABSL_LOCKS_EXCLUDED(mu_);
  std::string DescribeEndpoints() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Endpoint state changes, once Create has returned (its errors say the rest).
  void Log(const std::string& line) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Endpoint>> endpoints_ ABSL_GUARDED_BY(mu_);
  // Requests waiting for a teacher, oldest (earliest in data order) first.
  std::map<uint64_t, std::shared_ptr<PendingRequest>> queue_ ABSL_GUARDED_BY(mu_);
  // Clients taken out of service, destroyed by the prober outside the lock
  // (their destructors join threads that call back into the pool).
  std::vector<std::shared_ptr<RemoteTeacherClient>> retired_ ABSL_GUARDED_BY(mu_);
  v1::GetInfoResponse reference_ ABSL_GUARDED_BY(mu_);  // the first admitted teacher
  bool have_reference_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_attempt_ ABSL_GUARDED_BY(mu_) = 1;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_dispatcher_ ABSL_GUARDED_BY(mu_) = false;
  std::string resolve_error_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);

  std::thread prober_;
  std::thread dispatcher_;
};

}  // namespace retort::client

#endif  // RETORT_CLIENT_TEACHER_POOL_CLIENT_H_
