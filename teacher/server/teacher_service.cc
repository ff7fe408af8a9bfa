#include "teacher/server/teacher_service.h"

#include <deque>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/torch_status.h"
#include "teacher/request_validation.h"
#include "teacher/server/server_security.h"
#include "teacher/wire_codec.h"

namespace retort::teacher {

// The state of one Distill stream, shared with the batcher's callbacks.
class TeacherService::Stream : public std::enable_shared_from_this<TeacherService::Stream> {
 public:
  using ReaderWriter = grpc::ServerReaderWriter<v1::DistillResponse, v1::DistillRequest>;

  Stream(TeacherService* service, ReaderWriter* rw)
      : service_(service), rw_(rw), cancelled_(std::make_shared<std::atomic<bool>>(false)) {}

  // Runs the reader loop on the calling (handler) thread and the writer on
  // its own; returns when both are done.
  grpc::Status Serve(grpc::ServerContext* context);

 private:
  struct Outgoing {
    uint64_t sequence = 0;
    absl::StatusOr<Answer> answer;
    OutputSpec output;
    std::vector<uint64_t> row_keys;  // OUTPUT_SAMPLED: seeds of the rows' draws
    torch::Tensor query_ids;         // int64 [positions, m] when the request names ids
    absl::Time received;
    bool accepted = false;  // counted in flight
  };

  void Reply(uint64_t sequence, const absl::Status& error);
  void Accept(v1::DistillRequest request, absl::Time received);
  void Push(Outgoing outgoing);
  void WriterLoop();
  bool WriteResponse(const v1::DistillResponse& response);

  TeacherService* const service_;
  ReaderWriter* const rw_;
  const std::shared_ptr<std::atomic<bool>> cancelled_;

  absl::Mutex mu_;
  std::deque<Outgoing> outbox_ ABSL_GUARDED_BY(mu_);
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool reading_done_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ = false;  // writer thread only
};

grpc::Status TeacherService::Stream::Serve(grpc::ServerContext* context) {
  std::thread writer([this] { WriterLoop(); });
  const v1::ServerLimits& limits = service_->options_.limits;
  // A request's input bytes: rows * the largest example the limits allow.
  int64_t example = 4;
  for (int64_t d : service_->options_.fingerprint.input_shape()) {
    example *= d == -1 ? std::max<int64_t>(limits.max_sequence_length(), 1) : d;
  }
  // Query ids: at most max_top_k per input element (token).
  RequestAssembler assembler(example * limits.max_rows_per_request(),
                             limits.max_in_flight_per_stream(),
                             example * limits.max_rows_per_request() * limits.max_top_k());
  // Replies wait in the outbox while the client does not read; stop reading
  // its requests once that many are waiting, so one client that never
  // reads cannot grow the server's memory without bound.
  const size_t max_outbox = 2 * static_cast<size_t>(limits.max_in_flight_per_stream()) + 16;
  auto room = [this, max_outbox]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return outbox_.size() < max_outbox || cancelled_->load();
  };
  v1::DistillRequest part;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&room));
    }
    if (!rw_->Read(&part)) break;
    const absl::Time received = absl::Now();
    const uint64_t sequence = part.sequence();
    absl::StatusOr<std::optional<v1::DistillRequest>> whole = assembler.Add(std::move(part));
    part = v1::DistillRequest();
    if (!whole.ok()) {
      Reply(sequence, whole.status());
      continue;
    }
    if (!whole->has_value()) continue;
    v1::DistillRequest request = std::move(**whole);
    if (absl::Status valid = ValidateDistillRequest(request, service_->options_.fingerprint,
                                                    service_->options_.limits);
        !valid.ok()) {
      Reply(sequence, valid);
      continue;
    }
    Accept(std::move(request), received);
  }
  if (context->IsCancelled()) {
    cancelled_->store(true);
    service_->batcher_->Wake();
  }
  {
    absl::MutexLock lock(&mu_);
    reading_done_ = true;
  }
  writer.join();
  return context->IsCancelled() ? grpc::Status::CANCELLED : grpc::Status::OK;
}

void TeacherService::Stream::Reply(uint64_t sequence, const absl::Status& error) {
  Outgoing out;
  out.sequence = sequence;
  out.answer = error;
  Push(std::move(out));
}

void TeacherService::Stream::Accept(v1::DistillRequest request, absl::Time received) {
  const uint64_t sequence = request.sequence();
  const int max_in_flight = service_->options_.limits.max_in_flight_per_stream();
  bool over_limit = false;
  {
    absl::MutexLock lock(&mu_);
    over_limit = in_flight_ >= max_in_flight;
    if (!over_limit) ++in_flight_;
  }
  if (over_limit) {
    Reply(sequence, absl::ResourceExhaustedError(absl::StrCat(
                        "request ", sequence, ": this stream already has ", max_in_flight,
                        " requests in flight, the server's limit; wait for answers")));
    return;
  }
  // Checked and counted in one step, so a drain that starts now waits for it.
  bool draining = false;
  {
    absl::MutexLock lock(&service_->mu_);
    draining = service_->draining_;
    if (!draining) {
      ++service_->in_flight_;
      if (service_->in_flight_gauge_ != nullptr) {
        service_->in_flight_gauge_->Set(static_cast<double>(service_->in_flight_));
      }
    }
  }
  if (draining) {
    {
      absl::MutexLock lock(&mu_);
      --in_flight_;
    }
    Reply(sequence, absl::UnavailableError(
                        "this teacher is draining (shutting down); send the request to another"));
    return;
  }
  Outgoing pending;
  pending.sequence = sequence;
  pending.output.kind = request.output();
  pending.output.top_k = request.top_k();
  pending.output.samples = request.samples();
  pending.output.value_dtype = request.value_dtype();
  pending.received = received;
  pending.accepted = true;

  absl::StatusOr<torch::Tensor> inputs = RequestInputs(request);
  if (!inputs.ok()) {
    pending.answer = inputs.status();
    Push(std::move(pending));
    return;
  }
  if (pending.output.kind == v1::OUTPUT_SAMPLED) pending.row_keys = RowKeys(*inputs);
  absl::StatusOr<torch::Tensor> query_ids = RequestQueryIds(request);
  if (!query_ids.ok()) {
    pending.answer = query_ids.status();
    Push(std::move(pending));
    return;
  }
  pending.query_ids = *std::move(query_ids);
  if (service_->request_rows_ != nullptr) {
    service_->request_rows_->Observe(static_cast<double>(inputs->size(0)));
  }
  DynamicBatcher::Work work;
  work.inputs = *std::move(inputs);
  work.temperature = request.temperature();
  work.hidden_layers.assign(request.hidden_layers().begin(), request.hidden_layers().end());
  work.cancelled = cancelled_;
  auto self = shared_from_this();
  auto shared_pending = std::make_shared<Outgoing>(pending);
  work.done = [self, shared_pending](absl::StatusOr<Answer> answer) {
    Outgoing out = std::move(*shared_pending);
    out.answer = std::move(answer);
    self->Push(std::move(out));
  };
  absl::Status queued = service_->batcher_->Submit(std::move(work));
  if (!queued.ok()) {
    pending.answer =
        absl::Status(queued.code(), absl::StrCat("request ", sequence, ": ", queued.message()));
    Push(std::move(pending));
  }
}

void TeacherService::Stream::Push(Outgoing outgoing) {
  absl::MutexLock lock(&mu_);
  outbox_.push_back(std::move(outgoing));
}

bool TeacherService::Stream::WriteResponse(const v1::DistillResponse& response) {
  if (write_failed_ || cancelled_->load()) return false;
  if (!rw_->Write(response)) {
    write_failed_ = true;
    cancelled_->store(true);  // the client is gone: drop its queued work
    service_->batcher_->Wake();
    return false;
  }
  if (service_->bytes_out_ != nullptr) {
    service_->bytes_out_->Increment(static_cast<double>(response.ByteSizeLong()));
  }
  return true;
}

void TeacherService::Stream::WriterLoop() {
  while (true) {
    Outgoing out;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Stream* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
            return !s->outbox_.empty() || (s->reading_done_ && s->in_flight_ == 0);
          },
          this));
      if (outbox_.empty()) return;
      out = std::move(outbox_.front());
      outbox_.pop_front();
      // The stream's slot frees before the answer is written: a client may
      // send its next request the moment the answer arrives, and must not
      // find the slot still taken.
      if (out.accepted) --in_flight_;
    }
    if (out.answer.ok() && out.output.kind == v1::OUTPUT_SAMPLED) {
      absl::Status drawn = TorchCall("drawing samples", [&] {
        out.answer->sampled =
            SampleTargets(out.answer->log_probs, out.output.samples, out.row_keys);
      });
      if (!drawn.ok()) out.answer = drawn;
    }
    if (out.answer.ok() && out.query_ids.defined()) {
      absl::Status gathered = TorchCall("gathering query log-probabilities", [&] {
        out.answer->query_log_probs = out.answer->log_probs.gather(1, out.query_ids).contiguous();
      });
      if (!gathered.ok()) out.answer = gathered;
    }
    absl::StatusCode code = out.answer.ok() ? absl::StatusCode::kOk : out.answer.status().code();
    if (out.answer.ok()) {
      std::vector<v1::DistillResponse> responses = EncodeAnswer(
          out.sequence, *out.answer, out.output, service_->options_.limits.max_message_bytes());
      bool ok = true;
      for (const v1::DistillResponse& r : responses) ok = ok && WriteResponse(r);
      if (ok && service_->rows_total_ != nullptr) {
        service_->rows_total_->Increment(static_cast<double>(out.answer->log_probs.size(0)));
      }
      if (!ok) code = absl::StatusCode::kCancelled;
    } else {
      v1::DistillResponse r;
      r.set_sequence(out.sequence);
      r.set_error_code(static_cast<int32_t>(out.answer.status().code()));
      r.set_error_message(std::string(out.answer.status().message()));
      WriteResponse(r);
    }
    service_->CountRequest(code);
    if (out.accepted) {
      if (service_->latency_ != nullptr && code == absl::StatusCode::kOk) {
        service_->latency_->Observe(absl::ToDoubleSeconds(absl::Now() - out.received));
      }
      absl::MutexLock lock(&service_->mu_);
      --service_->in_flight_;
      if (service_->in_flight_gauge_ != nullptr) {
        service_->in_flight_gauge_->Set(static_cast<double>(service_->in_flight_));
      }
    }
  }
}

TeacherService::TeacherService(Options options, DynamicBatcher* batcher)
    : options_(std::move(options)), batcher_(batcher) {
  if (MetricsRegistry* m = options_.metrics) {
    streams_gauge_ = m->GetGauge("retort_teacher_open_streams", "Open Distill streams.");
    in_flight_gauge_ =
        m->GetGauge("retort_teacher_in_flight_requests", "Requests accepted and not yet answered.");
    rows_total_ = m->GetCounter("retort_teacher_rows_total", "Rows (positions) answered.");
    bytes_out_ =
        m->GetCounter("retort_teacher_response_bytes_total", "Bytes of Distill responses sent.");
    latency_ = m->GetHistogram("retort_teacher_request_latency_seconds",
                               "From a request's last part arriving to its answer being written.",
                               ExponentialBuckets(0.0001, 2, 18));
    request_rows_ = m->GetHistogram("retort_teacher_request_rows", "Rows in each accepted request.",
                                    ExponentialBuckets(1, 2, 14));
  }
}

void TeacherService::CountRequest(absl::StatusCode code) {
  if (options_.metrics == nullptr) return;
  options_.metrics
      ->GetCounter("retort_teacher_requests_total", "Distill requests answered, by status code.",
                   {{"code", absl::StatusCodeToString(code)}})
      ->Increment();
}

grpc::Status TeacherService::GetInfo(grpc::ServerContext* context, const v1::GetInfoRequest*,
                                     v1::GetInfoResponse* response) {
  grpc::Status auth = CheckBearerToken(*context, options_.auth_token);
  if (!auth.ok()) return auth;
  *response->mutable_fingerprint() = options_.fingerprint;
  *response->mutable_limits() = options_.limits;
  response->set_protocol_version(1);
  return grpc::Status::OK;
}

grpc::Status TeacherService::Distill(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::DistillResponse, v1::DistillRequest>* stream) {
  grpc::Status auth = CheckBearerToken(*context, options_.auth_token);
  if (!auth.ok()) return auth;
  {
    absl::MutexLock lock(&mu_);
    if (draining_) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "this teacher is draining (shutting down); connect to another");
    }
    if (open_streams_ >= options_.limits.max_streams()) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("this teacher already serves ", open_streams_,
                                       " streams, its limit (--max_streams)"));
    }
    ++open_streams_;
    if (streams_gauge_ != nullptr) streams_gauge_->Set(open_streams_);
  }
  auto state = std::make_shared<Stream>(this, stream);
  grpc::Status status = state->Serve(context);
  absl::MutexLock lock(&mu_);
  --open_streams_;
  if (streams_gauge_ != nullptr) streams_gauge_->Set(open_streams_);
  return status;
}

void TeacherService::StartDraining() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

bool TeacherService::WaitForInFlight(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(
                                   +[](TeacherService* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
                                     return s->in_flight_ == 0;
                                   },
                                   this),
                               deadline);
}

int64_t TeacherService::in_flight_requests() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

}  // namespace retort::teacher
