// RemoteTeacherClient: a TeacherClient that asks one teacher server over
// gRPC (retort.v1.Teacher/Distill).
//
// One bidirectional stream carries every request; requests are numbered,
// split into messages of bounded size, and answers are joined by number, so
// many requests can be in flight at once (Send) while LogProbs waits for one.
// When the stream breaks (the server restarts, a keepalive ping goes
// unanswered), the client reconnects with backoff and re-sends every
// unanswered request, for up to `reconnect_timeout`; only then do the waiting
// calls fail, with UNAVAILABLE naming the address. With `resend_after_break`
// off (how TeacherPoolClient uses it) a break fails every unanswered request
// at once with UNAVAILABLE, so the pool can re-send it to another teacher; the
// next request reconnects. On every connection it
// checks the server's fingerprint against the first one it saw (and against
// `expected_weights_sha256` when set), so a run never mixes two teachers.
//
// Thread-safe.
#ifndef RETORT_CLIENT_REMOTE_TEACHER_CLIENT_H_
#define RETORT_CLIENT_REMOTE_TEACHER_CLIENT_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/teacher_channel.h"
#include "client/teacher_client.h"
#include "retort/v1/teacher.grpc.pb.h"
#include "teacher/wire_codec.h"

namespace retort::client {

class RemoteTeacherClient : public TeacherClient {
 public:
  struct Options {
    std::string address;  // host:port
    TeacherChannelOptions channel;
    teacher::OutputSpec output;
    std::string expected_weights_sha256;                   // empty: accept the first teacher seen
    absl::Duration connect_timeout = absl::Seconds(30);    // first GetInfo
    absl::Duration request_timeout = absl::Seconds(120);   // one answer
    absl::Duration reconnect_timeout = absl::Seconds(30);  // re-sending after a break
    // false: fail unanswered requests when the stream breaks. Connection
    // errors then reach requests as UNAVAILABLE or FAILED_PRECONDITION (never
    // INVALID_ARGUMENT, which is kept for errors about a request itself).
    bool resend_after_break = true;
    // GetInfo waits for the server to come up (up to connect_timeout); off,
    // a refused connection fails at once (the pool's prober retries itself).
    bool wait_for_ready = true;
    // With resend_after_break off: called on the reader thread (no lock
    // held) each time the stream ends, before the unanswered requests fail.
    std::function<void(const absl::Status&)> on_stream_broken;
    int64_t max_message_bytes = teacher::kDefaultMaxMessageBytes;
  };

  struct Stats {
    int64_t requests = 0;
    int64_t bytes_sent = 0;      // serialized request messages
    int64_t bytes_received = 0;  // serialized response messages
    int64_t reconnects = 0;
  };

  using AnswerFuture = std::shared_future<absl::StatusOr<teacher::Answer>>;
  // Called once per request with its answer or error, on the client's reader
  // thread (or inline when the request fails before it is sent). Must not
  // block for long and must not destroy the client.
  using AnswerCallback = std::function<void(absl::StatusOr<teacher::Answer>)>;

  // Connects and reads the server's fingerprint and limits (waiting up to
  // connect_timeout for the server to come up). UNAVAILABLE naming the
  // address when it does not; FAILED_PRECONDITION when the fingerprint or
  // protocol version is not the expected one, or the output spec exceeds the
  // server's limits.
  static absl::StatusOr<std::unique_ptr<RemoteTeacherClient>> Create(Options options);
  ~RemoteTeacherClient() override;

  absl::StatusOr<v1::TeacherFingerprint> Fingerprint() override;
  // Send; the deferred future waits (up to request_timeout) when waited on
  // and must not outlive the client.
  TargetsFuture SubmitTargets(const Request& request) override;

  // Sends a request; the future holds the decoded answer. Waits (up to
  // request_timeout) while the server's max_in_flight_per_stream requests
  // are unanswered.
  // `query_ids` as TeacherClient::Request's.
  AnswerFuture Send(const torch::Tensor& inputs, double temperature,
                    const std::vector<std::string>& hidden_layers = {},
                    const torch::Tensor& query_ids = {});
  // Waits up to request_timeout for a future from Send.
  absl::StatusOr<teacher::Answer> Wait(const AnswerFuture& future);

  // Sends a request without waiting for room: the caller keeps at most
  // in_flight_limit() requests unanswered (the server refuses more).
  void SendAsync(const torch::Tensor& inputs, double temperature,
                 const std::vector<std::string>& hidden_layers, const torch::Tensor& query_ids,
                 AnswerCallback done);
  int in_flight_limit() const { return std::max(1, info_.limits().max_in_flight_per_stream()); }

  // Asks the server's gRPC health service about retort.v1.Teacher: OK when
  // SERVING; UNAVAILABLE with the reason otherwise (NOT_SERVING while it
  // drains or warms up, or no answer within `timeout`).
  absl::Status CheckServing(absl::Duration timeout);

  // Cancels the stream and fails every unanswered request with CANCELLED;
  // later requests fail at once. Safe while other threads use the client;
  // unblocks a Send stuck writing to a frozen server. Runs the callbacks of
  // unanswered requests on this thread.
  void Shutdown();
  // Like Shutdown, but runs no callback on this thread (so it may be called
  // under a lock the callbacks take): unanswered requests fail when the
  // client is destroyed.
  void Cancel();

  const v1::GetInfoResponse& info() const { return info_; }
  const std::string& address() const { return options_.address; }
  Stats stats() const;

 private:
  struct Pending {
    std::vector<v1::DistillRequest> parts;
    AnswerCallback done;
    teacher::AnswerAssembler assembler;
  };
  using Stream = grpc::ClientReaderWriter<v1::DistillRequest, v1::DistillResponse>;

  explicit RemoteTeacherClient(Options options);
  absl::StatusOr<v1::GetInfoResponse> CallGetInfo(absl::Duration timeout);
  absl::Status CheckInfo(const v1::GetInfoResponse& info) const;
  // A permanent connection error as the requests see it (see
  // resend_after_break).
  absl::Status ConnectionError(const absl::Status& status) const;
  // Encodes; on failure calls `done` and returns nullopt.
  std::optional<std::vector<v1::DistillRequest>> Encode(
      const torch::Tensor& inputs, double temperature,
      const std::vector<std::string>& hidden_layers, const torch::Tensor& query_ids,
      const AnswerCallback& done);
  // Registers and writes an encoded request (`reserved` when the caller
  // reserved room in Send).
  void Enqueue(std::vector<v1::DistillRequest> parts, AnswerCallback done, bool reserved);
  void ReaderLoop();
  // Opens a stream and re-sends everything pending; false if it could not.
  absl::Status Connect();
  void FailAll(const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_);
  void Deliver(const v1::DistillResponse& response) ABSL_LOCKS_EXCLUDED(mu_);
  bool WriteParts(Stream* stream, const std::vector<v1::DistillRequest>& parts)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  const Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Teacher::Stub> stub_;
  v1::GetInfoResponse info_;  // from the first connection; immutable after Create

  // write_mu_ serializes writes and stream replacement; taken before mu_.
  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::unique_ptr<grpc::ClientContext> context_ ABSL_GUARDED_BY(write_mu_);
  std::unique_ptr<Stream> stream_ ABSL_GUARDED_BY(write_mu_);

  mutable absl::Mutex mu_;
  std::map<uint64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  size_t reserved_ ABSL_GUARDED_BY(mu_) = 0;  // Send calls past the in-flight wait
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* cancellable_ ABSL_GUARDED_BY(mu_) =
      nullptr;  // the call to cancel on shutdown
  Stats stats_ ABSL_GUARDED_BY(mu_);

  std::thread reader_;
};

// The log-probabilities (dense, or top-k when the output spec keeps top-k
// answers sparse) and hidden states of a decoded answer, converted when the
// returned (deferred) future is waited on.
TeacherClient::TargetsFuture TargetsOf(RemoteTeacherClient::AnswerFuture answer);

}  // namespace retort::client

#endif  // RETORT_CLIENT_REMOTE_TEACHER_CLIENT_H_
