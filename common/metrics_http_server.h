// A tiny HTTP/1.1 server that exposes Prometheus metrics on GET /metrics.
//
//   MetricsHttpServer::Options options;
//   options.port = 9464;
//   options.render = [&registry] { return registry.RenderText(); };
//   RETORT_ASSIGN_OR_RETURN(auto server, MetricsHttpServer::Create(options));
//
// Responses: GET /metrics (a query string is ignored) -> 200 with
// `Content-Type: text/plain; version=0.0.4; charset=utf-8`; any other path ->
// 404; /metrics with another method -> 405; a malformed request line -> 400; a
// request head over `max_request_bytes` -> 431; `render` throwing -> 500.
// Every response carries Content-Length and `Connection: close`.
//
// One thread serves every connection with non-blocking sockets and poll(), so
// a slow or idle client never delays another. A connection that has not
// finished within `connection_timeout` is closed; at most `max_connections`
// are open at once (further clients wait in the listen backlog).
//
// Thread-safety: `render` is called on the server's thread, so it must be
// safe to call concurrently with whatever the rest of the program does
// (MetricsRegistry::RenderText is). The destructor wakes the thread, closes
// every socket and joins; it returns promptly.
#ifndef RETORT_COMMON_METRICS_HTTP_SERVER_H_
#define RETORT_COMMON_METRICS_HTTP_SERVER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace retort {

class MetricsHttpServer {
 public:
  struct Options {
    // An IPv4 address in dotted form; "0.0.0.0" listens on every interface.
    std::string host = "127.0.0.1";
    // 0 picks a free port; port() tells which.
    int port = 0;
    // Produces the body of GET /metrics. Required.
    std::function<std::string()> render;
    // Bytes of request line plus headers accepted before answering 431.
    size_t max_request_bytes = 8192;
    // Time a connection may take from accept to close, request and response.
    absl::Duration connection_timeout = absl::Seconds(5);
    int max_connections = 32;
  };

  // Binds, listens and starts the serving thread. INVALID_ARGUMENT for a bad
  // host, port or missing `render`; a bind error names host:port.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Create(Options options);

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;
  ~MetricsHttpServer();

  // The bound port.
  int port() const { return port_; }

 private:
  MetricsHttpServer(Options options, int listen_fd, int wake_read_fd, int wake_write_fd, int port);
  // The serving loop; returns when the wake pipe becomes readable.
  void Serve();

  const Options options_;
  const int listen_fd_;
  const int wake_read_fd_;
  const int wake_write_fd_;
  const int port_;
  std::thread thread_;
};

}  // namespace retort

#endif  // RETORT_COMMON_METRICS_HTTP_SERVER_H_
