#include "teacher/server/teacher_server.h"

#include <algorithm>

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/torch_status.h"

namespace retort::teacher {
namespace {

constexpr char kServiceName[] = "retort.v1.Teacher";

// Splits "host:port" (the host may be empty or bracketed IPv6).
absl::Status SplitHostPort(const std::string& address, const std::string& flag, std::string* host,
                           int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), port) ||
      *port < 0 || *port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " must be host:port (e.g. 127.0.0.1:50051), got '", address, "'"));
  }
  *host = address.substr(0, colon);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TeacherServer>> TeacherServer::Create(
    Options options, std::shared_ptr<Teacher> teacher) {
  if (teacher == nullptr) return absl::InvalidArgumentError("TeacherServer needs a teacher");
  std::string host;
  int port = 0;
  RETORT_RETURN_IF_ERROR(SplitHostPort(options.listen, "listen", &host, &port));
  if (options.max_rows_per_request < 1 || options.max_streams < 1 ||
      options.max_in_flight_per_stream < 1 || options.max_message_bytes < 65536 ||
      options.max_top_k < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server limits must be positive (max_rows_per_request=", options.max_rows_per_request,
        " max_streams=", options.max_streams,
        " max_in_flight_per_stream=", options.max_in_flight_per_stream,
        " max_top_k=", options.max_top_k, ") and max_message_bytes at least 65536"));
  }
  RETORT_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                          BuildServerCredentials(options.security));

  std::unique_ptr<TeacherServer> server(new TeacherServer());
  server->teacher_ = teacher;

  options.batcher.max_batch_rows = std::min(options.batcher.max_batch_rows, teacher->max_batch());
  // Warm up before anyone can connect: the first forward pass allocates.
  {
    std::vector<int64_t> shape = {
        std::min<int64_t>(options.batcher.max_batch_rows, options.max_rows_per_request)};
    for (int64_t d : teacher->fingerprint().input_shape()) shape.push_back(d == -1 ? 8 : d);
    absl::StatusOr<torch::Tensor> zeros = TorchCall("warm-up inputs", [&] {
      return teacher->fingerprint().input_dtype() == v1::DTYPE_INT32
                 ? torch::zeros(shape, torch::kInt64)
                 : torch::zeros(shape);
    });
    RETORT_RETURN_IF_ERROR(zeros.status());
    absl::StatusOr<TeacherOutput> warm = teacher->Forward(*zeros, {});
    if (!warm.ok()) {
      return absl::Status(warm.status().code(),
                          absl::StrCat("warm-up forward pass failed: ", warm.status().message()));
    }
  }

  options.batcher.metrics = &server->metrics_;
  RETORT_ASSIGN_OR_RETURN(server->batcher_, DynamicBatcher::Create(options.batcher, teacher));

  TeacherService::Options service_options;
  service_options.fingerprint = teacher->fingerprint();
  v1::ServerLimits& limits = service_options.limits;
  limits.set_max_rows_per_request(std::min(options.max_rows_per_request, teacher->max_batch()));
  limits.set_max_sequence_length(options.max_sequence_length);
  limits.set_min_temperature(kMinTemperature);
  limits.set_max_temperature(kMaxTemperature);
  limits.set_max_top_k(options.max_top_k);
  limits.set_max_streams(options.max_streams);
  limits.set_max_in_flight_per_stream(options.max_in_flight_per_stream);
  limits.set_max_message_bytes(options.max_message_bytes);
  limits.set_compute_dtype(options.compute_dtype);
  limits.set_deterministic(options.batcher.deterministic);
  service_options.auth_token = options.security.auth_token;
  service_options.metrics = &server->metrics_;
  server->service_ = std::make_unique<TeacherService>(service_options, server->batcher_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &server->port_);
  builder.RegisterService(server->service_.get());
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(kMinClientPingInterval)));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // Parts are at most about max_message_bytes; leave room for one oversized
  // position.
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<int64_t>(4 * options.max_message_bytes + (int64_t{1} << 20), 1 << 30)));
  // Each stream holds a handler thread; leave room for GetInfo and health.
  grpc::ResourceQuota quota("retort-teacher");
  quota.SetMaxThreads(options.max_streams + 16);
  builder.SetResourceQuota(quota);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat(
        "could not listen on ", options.listen,
        " (address in use, not local, or TLS files rejected; see the gRPC log above)"));
  }

  if (!options.metrics_listen.empty()) {
    std::string metrics_host;
    int metrics_port = 0;
    RETORT_RETURN_IF_ERROR(
        SplitHostPort(options.metrics_listen, "metrics_listen", &metrics_host, &metrics_port));
    MetricsHttpServer::Options http;
    http.host = metrics_host;
    http.port = metrics_port;
    MetricsRegistry* registry = &server->metrics_;
    http.render = [registry] { return registry->RenderText(); };
    RETORT_ASSIGN_OR_RETURN(server->metrics_server_, MetricsHttpServer::Create(http));
  }

  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus(true);
    health->SetServingStatus(kServiceName, true);
  }
  server->metrics_.GetGauge("retort_teacher_up", "1 while the teacher serves, 0 once draining.")
      ->Set(1);
  return server;
}

int TeacherServer::metrics_port() const {
  return metrics_server_ == nullptr ? 0 : metrics_server_->port();
}

bool TeacherServer::Drain(absl::Duration timeout) {
  if (stopped_) return true;
  stopped_ = true;
  const absl::Time deadline = absl::Now() + timeout;
  if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
    health->SetServingStatus(false);
    health->SetServingStatus(kServiceName, false);
  }
  metrics_.GetGauge("retort_teacher_up", "1 while the teacher serves, 0 once draining.")->Set(0);
  service_->StartDraining();
  const bool answered = service_->WaitForInFlight(deadline);
  // Fail what is still queued (UNAVAILABLE) before shutting the server down:
  // each stream's handler waits for its queued work, and the batcher would
  // only look at it again after max_delay, however long that is.
  batcher_->Shutdown();
  // Open streams are cancelled once the deadline passes; give them a moment
  // to see their last answers.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  server_->Wait();
  return answered;
}

TeacherServer::~TeacherServer() {
  if (!stopped_ && server_ != nullptr) {
    stopped_ = true;
    service_->StartDraining();
    batcher_->Shutdown();  // as in Drain: handlers wait for their queued work
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
  }
  if (batcher_ != nullptr) batcher_->Shutdown();
  metrics_server_.reset();
  server_.reset();
}

}  // namespace retort::teacher
