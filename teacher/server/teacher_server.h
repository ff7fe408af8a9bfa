// TeacherServer: a teacher model behind gRPC, from start to drain.
//
//   auto server = TeacherServer::Create(options, teacher);   // loads, warms up, listens
//   ... (*server)->port() ...
//   (*server)->Drain(absl::Seconds(30));                      // on SIGTERM
//
// Create warms the model up with one forward pass, then starts listening and
// only then reports SERVING on the standard gRPC health service (for the
// empty service name and "retort.v1.Teacher"). Drain turns health to
// NOT_SERVING, refuses new streams and requests with UNAVAILABLE, answers
// what was accepted (up to the timeout), then shuts the server down.
//
// Keepalive: the server pings idle connections every `keepalive_time` and
// drops them when a ping is not acknowledged within `keepalive_timeout`; it
// accepts client pings as often as every 5 s, with or without calls.
//
// Metrics, when `metrics_listen` is set, are served in the Prometheus text
// format at http://<metrics_listen>/metrics.
#ifndef RETORT_TEACHER_SERVER_TEACHER_SERVER_H_
#define RETORT_TEACHER_SERVER_TEACHER_SERVER_H_

#include <memory>
#include <string>

#include <grpcpp/server.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/metrics_http_server.h"
#include "common/prometheus_metrics.h"
#include "teacher/dynamic_batcher.h"
#include "teacher/server/server_security.h"
#include "teacher/server/teacher_service.h"
#include "teacher/teacher.h"

namespace retort::teacher {

// Minimum interval between client keepalive pings the server tolerates.
inline constexpr absl::Duration kMinClientPingInterval = absl::Seconds(5);

class TeacherServer {
 public:
  struct Options {
    std::string listen = "127.0.0.1:0";  // host:port; port 0 picks a free one
    std::string metrics_listen;          // host:port for /metrics; empty: none
    ServerSecurityOptions security;
    DynamicBatcher::Options batcher;  // its `metrics` is set by the server
    int64_t max_rows_per_request = 8192;
    int32_t max_top_k = 1024;
    int32_t max_streams = 64;
    int32_t max_in_flight_per_stream = 64;
    int64_t max_message_bytes = kDefaultMaxMessageBytes;
    int64_t max_sequence_length = 0;
    absl::Duration keepalive_time = absl::Seconds(10);
    absl::Duration keepalive_timeout = absl::Seconds(5);
    std::string compute_dtype = "fp32";  // reported in GetInfo
  };

  static absl::StatusOr<std::unique_ptr<TeacherServer>> Create(Options options,
                                                               std::shared_ptr<Teacher> teacher);
  // Shuts down at once (in-flight streams are cancelled) if not drained.
  ~TeacherServer();

  int port() const { return port_; }
  int metrics_port() const;  // 0 when metrics are off
  const v1::TeacherFingerprint& fingerprint() const { return teacher_->fingerprint(); }
  MetricsRegistry& metrics() { return metrics_; }

  // Graceful stop, as described above. Returns true when everything in
  // flight was answered before the timeout. Idempotent.
  bool Drain(absl::Duration timeout);

 private:
  TeacherServer() = default;

  std::shared_ptr<Teacher> teacher_;
  MetricsRegistry metrics_;
  std::unique_ptr<DynamicBatcher> batcher_;
  std::unique_ptr<TeacherService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsHttpServer> metrics_server_;
  int port_ = 0;
  bool stopped_ = false;
};

}  // namespace retort::teacher

#endif  // RETORT_TEACHER_SERVER_TEACHER_SERVER_H_
