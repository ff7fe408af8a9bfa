#include "client/remote_teacher_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace retort::client {
namespace {

bool IsPermanent(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kInvalidArgument:
      return true;
    default:
      return false;
  }
}

std::chrono::system_clock::time_point Deadline(absl::Duration timeout) {
  return absl::ToChronoTime(absl::Now() + timeout);
}

}  // namespace

absl::StatusOr<std::unique_ptr<RemoteTeacherClient>> RemoteTeacherClient::Create(Options options) {
  if (options.address.empty()) {
    return absl::InvalidArgumentError("--teacher_address must be host:port");
  }
  std::unique_ptr<RemoteTeacherClient> client(new RemoteTeacherClient(std::move(options)));
  const Options& o = client->options_;
  RETORT_ASSIGN_OR_RETURN(client->channel_, CreateTeacherChannel(o.address, o.channel));
  client->stub_ = v1::Teacher::NewStub(client->channel_);
  absl::StatusOr<v1::GetInfoResponse> info = client->CallGetInfo(o.connect_timeout);
  if (!info.ok()) {
    if (info.status().code() == absl::StatusCode::kUnavailable ||
        info.status().code() == absl::StatusCode::kDeadlineExceeded) {
      return absl::UnavailableError(
          absl::StrCat("teacher at ", o.address, " did not answer within ",
                       absl::FormatDuration(o.connect_timeout), ": ", info.status().message()));
    }
    return info.status();
  }
  RETORT_RETURN_IF_ERROR(client->CheckInfo(*info));
  const v1::ServerLimits& limits = info->limits();
  if (o.output.kind == v1::OUTPUT_TOP_K &&
      (o.output.top_k > limits.max_top_k() || o.output.top_k > info->fingerprint().num_classes())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--teacher_top_k=", o.output.top_k, " exceeds what teacher ", o.address, " allows (",
        std::min<int64_t>(limits.max_top_k(), info->fingerprint().num_classes()), ")"));
  }
  client->info_ = *std::move(info);
  client->reader_ = std::thread([c = client.get()] { c->ReaderLoop(); });
  return client;
}

RemoteTeacherClient::RemoteTeacherClient(Options options) : options_(std::move(options)) {}

RemoteTeacherClient::~RemoteTeacherClient() {
  Shutdown();
  if (reader_.joinable()) reader_.join();
  FailAll(absl::CancelledError("the teacher client was closed"));
}

void RemoteTeacherClient::Cancel() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
  if (cancellable_ != nullptr) cancellable_->TryCancel();
}

void RemoteTeacherClient::Shutdown() {
  Cancel();
  FailAll(absl::CancelledError(
      absl::StrCat("the client of teacher ", options_.address, " was shut down")));
}

absl::Status RemoteTeacherClient::CheckServing(absl::Duration timeout) {
  grpc::ClientContext context;
  context.set_deadline(Deadline(timeout));
  AddCallCredentials(options_.channel, &context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("retort.v1.Teacher");
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status =
      grpc::health::v1::Health::NewStub(channel_)->Check(&context, request, &response);
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("teacher at ", options_.address,
                     " failed its health check: ", FromGrpcStatus(status, "").message()));
  }
  if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::UnavailableError(
        absl::StrCat("teacher at ", options_.address, " reports ",
                     grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status())));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::GetInfoResponse> RemoteTeacherClient::CallGetInfo(absl::Duration timeout) {
  grpc::ClientContext context;
  context.set_deadline(Deadline(timeout));
  context.set_wait_for_ready(options_.wait_for_ready);
  AddCallCredentials(options_.channel, &context);
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return absl::CancelledError("the teacher client was closed");
    cancellable_ = &context;
  }
  v1::GetInfoResponse info;
  grpc::Status status = stub_->GetInfo(&context, v1::GetInfoRequest(), &info);
  {
    absl::MutexLock lock(&mu_);
    cancellable_ = nullptr;
  }
  if (!status.ok()) {
    return FromGrpcStatus(status, absl::StrCat("teacher at ", options_.address));
  }
  return info;
}

absl::Status RemoteTeacherClient::CheckInfo(const v1::GetInfoResponse& info) const {
  if (info.protocol_version() != 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("teacher at ", options_.address, " speaks protocol version ",
                     info.protocol_version(), "; this trainer speaks 1"));
  }
  const v1::TeacherFingerprint& fp = info.fingerprint();
  if (!options_.expected_weights_sha256.empty() &&
      fp.weights_sha256() != options_.expected_weights_sha256) {
    return absl::FailedPreconditionError(
        absl::StrCat("teacher at ", options_.address, " serves weights ",
                     fp.weights_sha256().substr(0, 12), " (", fp.architecture(),
                     ") but this run expects ", options_.expected_weights_sha256.substr(0, 12)));
  }
  if (info_.has_fingerprint()) {
    const v1::TeacherFingerprint& first = info_.fingerprint();
    if (fp.weights_sha256() != first.weights_sha256() ||
        fp.architecture() != first.architecture() || fp.num_classes() != first.num_classes() ||
        fp.tokenizer_sha256() != first.tokenizer_sha256()) {
      return absl::FailedPreconditionError(
          absl::StrCat("teacher at ", options_.address, " now serves weights ",
                       fp.weights_sha256().substr(0, 12), " (", fp.architecture(),
                       ") but this run started with ", first.weights_sha256().substr(0, 12), " (",
                       first.architecture(), "); refusing to mix teachers"));
    }
  }
  return absl::OkStatus();
}

absl::Status RemoteTeacherClient::ConnectionError(const absl::Status& status) const {
  if (options_.resend_after_break || absl::IsFailedPrecondition(status)) return status;
  // The connection failed, not the request: another teacher may take it.
  return absl::FailedPreconditionError(
      absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message()));
}

absl::StatusOr<v1::TeacherFingerprint> RemoteTeacherClient::Fingerprint() {
  return info_.fingerprint();
}

TeacherClient::TargetsFuture RemoteTeacherClient::SubmitTargets(const Request& request) {
  AnswerFuture answer =
      Send(request.inputs, request.temperature, request.hidden_layers, request.query_ids);
  // Waited on with request_timeout; the future must not outlive the client.
  return std::async(std::launch::deferred,
                    [this, answer]() -> absl::StatusOr<TeacherClient::Targets> {
                      RETORT_ASSIGN_OR_RETURN(teacher::Answer a, Wait(answer));
                      return TeacherClient::Targets{.log_probs = a.log_probs,
                                                    .top_k = a.top_k,
                                                    .hidden = a.hidden,
                                                    .query_log_probs = a.query_log_probs};
                    })
      .share();
}

TeacherClient::TargetsFuture TargetsOf(RemoteTeacherClient::AnswerFuture answer) {
  return std::async(std::launch::deferred,
                    [answer]() -> absl::StatusOr<TeacherClient::Targets> {
                      const absl::StatusOr<teacher::Answer>& a = answer.get();
                      if (!a.ok()) return a.status();
                      return TeacherClient::Targets{.log_probs = a->log_probs,
                                                    .top_k = a->top_k,
                                                    .hidden = a->hidden,
                                                    .query_log_probs = a->query_log_probs};
                    })
      .share();
}

std::optional<std::vector<v1::DistillRequest>> RemoteTeacherClient::Encode(
    const torch::Tensor& inputs, double temperature, const std::vector<std::string>& hidden_layers,
    const torch::Tensor& query_ids, const AnswerCallback& done) {
  if (absl::Status valid = ValidateQueryIds(inputs, query_ids, info_.fingerprint().num_classes());
      !valid.ok()) {
    done(valid);
    return std::nullopt;
  }
  absl::StatusOr<std::vector<v1::DistillRequest>> encoded =
      TorchCall("encoding a teacher request", [&] {
        return teacher::EncodeRequest(
            0, inputs.contiguous(), temperature, options_.output, hidden_layers,
            query_ids.defined() ? query_ids.contiguous() : query_ids, options_.max_message_bytes);
      });
  if (!encoded.ok()) {
    done(encoded.status());
    return std::nullopt;
  }
  return *std::move(encoded);
}

RemoteTeacherClient::AnswerFuture RemoteTeacherClient::Send(
    const torch::Tensor& inputs, double temperature, const std::vector<std::string>& hidden_layers,
    const torch::Tensor& query_ids) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<teacher::Answer>>>();
  AnswerFuture future = promise->get_future().share();
  AnswerCallback done = [promise](absl::StatusOr<teacher::Answer> answer) {
    promise->set_value(std::move(answer));
  };
  std::optional<std::vector<v1::DistillRequest>> parts =
      Encode(inputs, temperature, hidden_layers, query_ids, done);
  if (!parts.has_value()) return future;
  // Never more requests outstanding than the server accepts on a stream:
  // wait for answers (up to request_timeout) before adding one.
  {
    const size_t limit = static_cast<size_t>(in_flight_limit());
    absl::MutexLock lock(&mu_);
    auto has_room = [this, limit]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return shutdown_ || pending_.size() + reserved_ < limit;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&has_room), options_.request_timeout)) {
      done(absl::DeadlineExceededError(absl::StrCat(
          "teacher at ", options_.address, " left ", limit, " requests unanswered for ",
          absl::FormatDuration(options_.request_timeout))));
      return future;
    }
    ++reserved_;
  }
  Enqueue(*std::move(parts), std::move(done), /*reserved=*/true);
  return future;
}

void RemoteTeacherClient::SendAsync(const torch::Tensor& inputs, double temperature,
                                    const std::vector<std::string>& hidden_layers,
                                    const torch::Tensor& query_ids, AnswerCallback done) {
  std::optional<std::vector<v1::DistillRequest>> parts =
      Encode(inputs, temperature, hidden_layers, query_ids, done);
  if (parts.has_value()) Enqueue(*std::move(parts), std::move(done), /*reserved=*/false);
}

void RemoteTeacherClient::Enqueue(std::vector<v1::DistillRequest> parts, AnswerCallback done,
                                  bool reserved) {
  {
    absl::MutexLock write_lock(&write_mu_);
    bool closed;
    {
      absl::MutexLock lock(&mu_);
      if (reserved) --reserved_;
      closed = shutdown_;
      if (!closed) {
        const uint64_t sequence = next_sequence_++;
        for (v1::DistillRequest& part : parts) part.set_sequence(sequence);
        Pending& pending = pending_[sequence];
        pending.assembler = teacher::AnswerAssembler(options_.output.keep_top_k);
        pending.parts = parts;
        pending.done = std::move(done);
        ++stats_.requests;
      }
    }
    if (!closed) {
      if (stream_ != nullptr) WriteParts(stream_.get(), parts);
      return;
    }
  }
  done(absl::CancelledError("the teacher client was closed"));
}

absl::StatusOr<teacher::Answer> RemoteTeacherClient::Wait(const AnswerFuture& future) {
  if (future.wait_for(absl::ToChronoSeconds(options_.request_timeout)) !=
      std::future_status::ready) {
    return absl::DeadlineExceededError(
        absl::StrCat("no answer from teacher at ", options_.address, " within ",
                     absl::FormatDuration(options_.request_timeout)));
  }
  return future.get();
}

bool RemoteTeacherClient::WriteParts(Stream* stream, const std::vector<v1::DistillRequest>& parts) {
  int64_t bytes = 0;
  bool ok = true;
  for (const v1::DistillRequest& part : parts) {
    if (!stream->Write(part)) {
      ok = false;  // the reader sees the broken stream and reconnects
      break;
    }
    bytes += static_cast<int64_t>(part.ByteSizeLong());
  }
  absl::MutexLock lock(&mu_);
  stats_.bytes_sent += bytes;
  return ok;
}

absl::Status RemoteTeacherClient::Connect() {
  RETORT_ASSIGN_OR_RETURN(v1::GetInfoResponse info,
                          CallGetInfo(std::min(options_.reconnect_timeout, absl::Seconds(5))));
  RETORT_RETURN_IF_ERROR(CheckInfo(info));
  absl::MutexLock write_lock(&write_mu_);
  context_ = std::make_unique<grpc::ClientContext>();
  AddCallCredentials(options_.channel, context_.get());
  std::vector<std::vector<v1::DistillRequest>> resend;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return absl::CancelledError("the teacher client was closed");
    cancellable_ = context_.get();
    for (auto& [sequence, pending] : pending_) {
      pending.assembler = teacher::AnswerAssembler(
          options_.output.keep_top_k);  // parts of a dead stream do not count
      resend.push_back(pending.parts);
    }
  }
  stream_ = stub_->Distill(context_.get());
  for (const auto& parts : resend) WriteParts(stream_.get(), parts);
  return absl::OkStatus();
}

void RemoteTeacherClient::Deliver(const v1::DistillResponse& response) {
  std::map<uint64_t, Pending>::node_type node;
  {
    absl::MutexLock lock(&mu_);
    stats_.bytes_received += static_cast<int64_t>(response.ByteSizeLong());
    auto it = pending_.find(response.sequence());
    if (it == pending_.end()) return;  // answered already, or given up on
    node = pending_.extract(it);
  }
  absl::StatusOr<std::optional<teacher::Answer>> added = node.mapped().assembler.Add(response);
  if (!added.ok()) {
    node.mapped().done(absl::Status(
        added.status().code(),
        absl::StrCat("teacher at ", options_.address, ": ", added.status().message())));
    return;
  }
  if (added->has_value()) {
    node.mapped().done(std::move(**added));
    return;
  }
  absl::MutexLock lock(&mu_);
  pending_.insert(std::move(node));
}

void RemoteTeacherClient::FailAll(const absl::Status& status) {
  std::map<uint64_t, Pending> failed;
  {
    absl::MutexLock lock(&mu_);
    failed.swap(pending_);
  }
  for (auto& [sequence, pending] : failed) pending.done(status);
}

void RemoteTeacherClient::ReaderLoop() {
  absl::Duration backoff = absl::Milliseconds(50);
  absl::Time broken_since = absl::InfiniteFuture();
  bool connected_before = false;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](RemoteTeacherClient* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) {
            return c->shutdown_ || !c->pending_.empty();
          },
          this));
      if (shutdown_) return;
    }
    absl::Status connected = Connect();
    if (!connected.ok()) {
      {
        // Only our own shutdown ends the loop; a CANCELLED from a server
        // that is going away is a failure like any other.
        absl::MutexLock lock(&mu_);
        if (shutdown_) return;
      }
      if (broken_since == absl::InfiniteFuture()) broken_since = absl::Now();
      if (IsPermanent(connected.code())) {
        FailAll(ConnectionError(connected));
        broken_since = absl::InfiniteFuture();
        continue;
      }
      if (!options_.resend_after_break) {
        FailAll(absl::UnavailableError(
            absl::StrCat("teacher at ", options_.address, " unreachable: ", connected.message())));
        broken_since = absl::InfiniteFuture();
        continue;
      }
      if (absl::Now() - broken_since >= options_.reconnect_timeout) {
        FailAll(absl::UnavailableError(absl::StrCat(
            "teacher at ", options_.address, " unreachable for ",
            absl::FormatDuration(absl::Now() - broken_since), ": ", connected.message())));
        broken_since = absl::InfiniteFuture();
        continue;
      }
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&shutdown_), backoff);
      backoff = std::min(2 * backoff, absl::Seconds(2));
      continue;
    }
    if (connected_before) {
      absl::MutexLock lock(&mu_);
      ++stats_.reconnects;
    }
    connected_before = true;
    Stream* stream;
    {
      absl::MutexLock write_lock(&write_mu_);
      stream = stream_.get();
    }
    v1::DistillResponse response;
    bool delivered = false;
    while (stream->Read(&response)) {
      Deliver(response);
      delivered = true;
      broken_since = absl::InfiniteFuture();
      backoff = absl::Milliseconds(50);
    }
    grpc::Status status;
    {
      absl::MutexLock write_lock(&write_mu_);
      {
        absl::MutexLock lock(&mu_);
        cancellable_ = nullptr;
      }
      status = stream_->Finish();
      stream_.reset();
      context_.reset();
    }
    {
      absl::MutexLock lock(&mu_);
      if (shutdown_) return;
    }
    if (broken_since == absl::InfiniteFuture()) broken_since = absl::Now();
    absl::Status broken = FromGrpcStatus(status, absl::StrCat("teacher at ", options_.address));
    if (!broken.ok() && IsPermanent(broken.code())) {
      FailAll(ConnectionError(broken));
      broken_since = absl::InfiniteFuture();
      continue;
    }
    if (!options_.resend_after_break) {
      const absl::Status ended = absl::UnavailableError(
          absl::StrCat("teacher at ", options_.address, ": the stream ended",
                       broken.ok() ? std::string() : absl::StrCat(" (", broken.message(), ")")));
      // Tell the owner even when nothing was waiting: a dead teacher is
      // news before its next request.
      if (options_.on_stream_broken) options_.on_stream_broken(ended);
      FailAll(ended);
      broken_since = absl::InfiniteFuture();
      continue;
    }
    if (!delivered) {
      // The stream ended before answering anything (e.g. refused past the
      // server's --max_streams while GetInfo still works): back off and give
      // up after reconnect_timeout, as when connecting fails, instead of
      // reconnecting in a tight loop.
      if (absl::Now() - broken_since >= options_.reconnect_timeout) {
        FailAll(absl::UnavailableError(
            absl::StrCat("teacher at ", options_.address, " unreachable for ",
                         absl::FormatDuration(absl::Now() - broken_since), ": ",
                         broken.ok() ? "the stream ended without answers" : broken.message())));
        broken_since = absl::InfiniteFuture();
        continue;
      }
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&shutdown_), backoff);
      backoff = std::min(2 * backoff, absl::Seconds(2));
    }
  }
}

RemoteTeacherClient::Stats RemoteTeacherClient::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace retort::client
