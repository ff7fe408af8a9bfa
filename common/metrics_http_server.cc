#include "common/metrics_http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace retort {
namespace {

using SteadyClock = std::chrono::steady_clock;

absl::Status ErrnoStatus(int error_number, absl::string_view what) {
  return absl::Status(absl::ErrnoToStatusCode(error_number),
                      absl::StrCat(what, ": ", std::strerror(error_number)));
}

std::string Response(absl::string_view status, absl::string_view content_type,
                     absl::string_view body, absl::string_view extra_headers = "") {
  return absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(), "\r\n", extra_headers,
                      "Connection: close\r\n\r\n", body);
}

std::string ErrorResponse(absl::string_view status, absl::string_view extra_headers = "") {
  return Response(status, "text/plain; charset=utf-8", absl::StrCat(status, "\n"), extra_headers);
}

// Whether `line` (no line ending) looks like `METHOD SP /target SP HTTP/x.y`.
bool ParseRequestLine(absl::string_view line, absl::string_view* method, absl::string_view* path) {
  std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
  if (parts.size() != 3 || parts[0].empty() || !absl::StartsWith(parts[1], "/") ||
      !absl::StartsWith(parts[2], "HTTP/")) {
    return false;
  }
  for (char c : parts[0]) {
    if (c < 'A' || c > 'Z') return false;
  }
  *method = parts[0];
  *path = parts[1].substr(0, parts[1].find_first_of("?#"));
  return true;
}

struct Connection {
  enum class State { kReading, kWriting, kDraining };

  explicit Connection(int fd, SteadyClock::time_point deadline) : fd(fd), deadline(deadline) {}
  ~Connection() { ::close(fd); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const int fd;
  const SteadyClock::time_point deadline;
  State state = State::kReading;
  std::string in;
  std::string out;
  size_t written = 0;
  bool done = false;  // Close at the next sweep.
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Create(Options options) {
  if (!options.render)
    return absl::InvalidArgumentError("MetricsHttpServer needs a render function");
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port out of range: ", options.port));
  }
  if (options.max_request_bytes < 64 || options.max_connections < 1 ||
      options.connection_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "MetricsHttpServer needs max_request_bytes >= 64, max_connections >= 1 and a positive "
        "connection_timeout");
  }
  const std::string where = absl::StrCat(options.host, ":", options.port);
  sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(options.port));
  if (::inet_pton(AF_INET, options.host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics server host must be an IPv4 address, got \"", options.host, "\""));
  }

  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("cannot create a socket for ", where));
  int one = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    int error = errno;
    ::close(fd);
    return ErrnoStatus(error, absl::StrCat("cannot set SO_REUSEADDR for ", where));
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    int error = errno;
    ::close(fd);
    return ErrnoStatus(error, absl::StrCat("cannot bind metrics server to ", where));
  }
  if (::listen(fd, 64) != 0) {
    int error = errno;
    ::close(fd);
    return ErrnoStatus(error, absl::StrCat("cannot listen on ", where));
  }
  sockaddr_in bound;
  socklen_t bound_len = sizeof(bound);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    int error = errno;
    ::close(fd);
    return ErrnoStatus(error, absl::StrCat("cannot read the bound port of ", where));
  }
  int wake[2];
  if (::pipe2(wake, O_NONBLOCK | O_CLOEXEC) != 0) {
    int error = errno;
    ::close(fd);
    return ErrnoStatus(error, "cannot create the metrics server's wake pipe");
  }
  std::unique_ptr<MetricsHttpServer> server(
      new MetricsHttpServer(std::move(options), fd, wake[0], wake[1], ntohs(bound.sin_port)));
  server->thread_ = std::thread([s = server.get()] { s->Serve(); });
  return server;
}

MetricsHttpServer::MetricsHttpServer(Options options, int listen_fd, int wake_read_fd,
                                     int wake_write_fd, int port)
    : options_(std::move(options)),
      listen_fd_(listen_fd),
      wake_read_fd_(wake_read_fd),
      wake_write_fd_(wake_write_fd),
      port_(port) {}

MetricsHttpServer::~MetricsHttpServer() {
  char byte = 0;
  ssize_t n = ::write(wake_write_fd_, &byte, 1);
  (void)n;  // The pipe is empty, so the write succeeds; if not, poll sees nothing new anyway.
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(wake_read_fd_);
  ::close(wake_write_fd_);
}

void MetricsHttpServer::Serve() {
  const auto timeout = absl::ToChronoNanoseconds(options_.connection_timeout);
  const size_t max_connections = static_cast<size_t>(options_.max_connections);
  std::vector<std::unique_ptr<Connection>> connections;
  // accept() failing for lack of resources (EMFILE, ...) leaves the listening
  // socket readable; pause accepting for a moment instead of spinning.
  SteadyClock::time_point accept_paused_until = SteadyClock::time_point::min();
  std::vector<pollfd> fds;

  // Turns a complete or broken request head into a response.
  auto respond = [this](Connection& c) {
    size_t line_end = c.in.find('\n');
    absl::string_view line = absl::string_view(c.in).substr(0, line_end);
    if (absl::EndsWith(line, "\r")) line.remove_suffix(1);
    absl::string_view method, path;
    if (!ParseRequestLine(line, &method, &path)) {
      c.out = ErrorResponse("400 Bad Request");
    } else if (path != "/metrics") {
      c.out = ErrorResponse("404 Not Found");
    } else if (method != "GET") {
      c.out = ErrorResponse("405 Method Not Allowed", "Allow: GET\r\n");
    } else {
      try {
        c.out = Response("200 OK", "text/plain; version=0.0.4; charset=utf-8", options_.render());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "MetricsHttpServer: render failed: %s\n", e.what());
        c.out = ErrorResponse("500 Internal Server Error");
      } catch (...) {
        std::fprintf(stderr, "MetricsHttpServer: render failed\n");
        c.out = ErrorResponse("500 Internal Server Error");
      }
    }
    c.state = Connection::State::kWriting;
  };

  auto on_readable = [&](Connection& c) {
    char buf[4096];
    ssize_t n = ::recv(c.fd, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) c.done = true;
      return;
    }
    if (n == 0) {  // The client closed (or finished closing after our response).
      c.done = true;
      return;
    }
    if (c.state == Connection::State::kDraining) return;  // Discard what follows the head.
    c.in.append(buf, static_cast<size_t>(n));
    size_t line_end = c.in.find('\n');
    bool head_complete =
        c.in.find("\r\n\r\n") != std::string::npos || c.in.find("\n\n") != std::string::npos;
    if (head_complete) {
      respond(c);
    } else if (line_end != std::string::npos) {
      // Answer a broken request line at once rather than waiting for headers.
      absl::string_view line = absl::string_view(c.in).substr(0, line_end);
      if (absl::EndsWith(line, "\r")) line.remove_suffix(1);
      absl::string_view method, path;
      if (!ParseRequestLine(line, &method, &path)) respond(c);
    }
    if (c.state == Connection::State::kReading && c.in.size() >= options_.max_request_bytes) {
      c.out = ErrorResponse("431 Request Header Fields Too Large");
      c.state = Connection::State::kWriting;
    }
    if (c.state != Connection::State::kReading) c.in.clear();
  };

  auto on_writable = [&](Connection& c) {
    ssize_t n = ::send(c.fd, c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) c.done = true;
      return;
    }
    c.written += static_cast<size_t>(n);
    if (c.written == c.out.size()) {
      // Half-close and read until the client closes, so that unread request
      // bytes do not turn our close into a reset that eats the response.
      ::shutdown(c.fd, SHUT_WR);
      c.state = Connection::State::kDraining;
    }
  };

  while (true) {
    const SteadyClock::time_point now = SteadyClock::now();
    connections.erase(std::remove_if(connections.begin(), connections.end(),
                                     [now](const std::unique_ptr<Connection>& c) {
                                       return c->done || now >= c->deadline;
                                     }),
                      connections.end());

    fds.clear();
    fds.push_back({wake_read_fd_, POLLIN, 0});
    const bool accepting = connections.size() < max_connections && now >= accept_paused_until;
    fds.push_back({accepting ? listen_fd_ : -1, POLLIN, 0});  // Negative fds are skipped.
    SteadyClock::time_point wake_at = SteadyClock::time_point::max();
    if (!accepting && connections.size() < max_connections) wake_at = accept_paused_until;
    for (const auto& c : connections) {
      int16_t events = c->state == Connection::State::kWriting ? POLLOUT : POLLIN;
      fds.push_back({c->fd, events, 0});
      wake_at = std::min(wake_at, c->deadline);
    }
    int timeout_ms = -1;
    if (wake_at != SteadyClock::time_point::max()) {
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(wake_at - now) +
                  std::chrono::milliseconds(1);
      timeout_ms = static_cast<int>(std::clamp<int64_t>(wait.count(), 0, 60000));
    }

    int ready = ::poll(fds.data(), fds.size(), timeout_ms);
    if (ready < 0) {
      if (errno == EINTR || errno == ENOMEM) continue;
      std::fprintf(stderr, "MetricsHttpServer: poll failed: %s; stopping\n", std::strerror(errno));
      break;
    }
    if (fds[0].revents != 0) break;  // The destructor asked us to stop.

    // Connections first: `fds[i + 2]` belongs to `connections[i]` until new
    // ones are accepted below.
    const size_t polled = fds.size() - 2;
    for (size_t i = 0; i < polled; ++i) {
      const int16_t revents = fds[i + 2].revents;
      if (revents == 0) continue;
      Connection& c = *connections[i];
      if (revents & POLLNVAL) {
        c.done = true;
      } else if (c.state == Connection::State::kWriting) {
        on_writable(c);  // An error or hang-up shows as send() failing.
      } else {
        on_readable(c);  // An error or hang-up shows as recv() returning <= 0.
      }
    }

    if (accepting && (fds[1].revents & POLLIN)) {
      while (connections.size() < max_connections) {
        int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
          connections.push_back(std::make_unique<Connection>(fd, SteadyClock::now() + timeout));
          continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          accept_paused_until = SteadyClock::now() + std::chrono::milliseconds(100);
        }
        break;  // EAGAIN: nothing more to accept; anything else: retry after poll.
      }
    }
  }
  connections.clear();  // Closes every client socket.
}

}  // namespace retort
