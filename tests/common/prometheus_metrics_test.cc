#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/metrics_http_server.h"
#include "common/prometheus_metrics.h"

namespace retort {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

// ---------------------------------------------------------------------------
// Registry and rendering.

TEST(PrometheusMetricsTest, CounterRendersWithSortedLabels) {
  MetricsRegistry registry;
  Counter* counter = registry.GetCounter("retort_requests_total", "Requests served.",
                                         {{"method", "Distill"}, {"code", "OK"}});
  counter->Increment(2);
  counter->Increment();
  EXPECT_EQ(counter->value(), 3.0);
  EXPECT_EQ(registry.RenderText(),
            "# HELP retort_requests_total Requests served.\n"
            "# TYPE retort_requests_total counter\n"
            "retort_requests_total{code=\"OK\",method=\"Distill\"} 3\n");
}

TEST(PrometheusMetricsTest, CounterIgnoresNegativeAndNaNIncrements) {
  MetricsRegistry registry;
  Counter* counter = registry.GetCounter("retort_events_total", "Events.");
  counter->Increment(1.5);
  counter->Increment(-1);
  counter->Increment(std::nan(""));
  EXPECT_EQ(counter->value(), 1.5);
}

TEST(PrometheusMetricsTest, GaugeRendersWithoutLabels) {
  MetricsRegistry registry;
  Gauge* gauge = registry.GetGauge("retort_queue_depth", "Requests waiting.");
  gauge->Set(2.5);
  gauge->Add(-1);
  EXPECT_EQ(gauge->value(), 1.5);
  EXPECT_EQ(registry.RenderText(),
            "# HELP retort_queue_depth Requests waiting.\n"
            "# TYPE retort_queue_depth gauge\n"
            "retort_queue_depth 1.5\n");
}

TEST(PrometheusMetricsTest, GaugeRendersSpecialAndLargeValues) {
  MetricsRegistry registry;
  registry.GetGauge("a", "A.")->Set(std::numeric_limits<double>::infinity());
  registry.GetGauge("b", "B.")->Set(-std::numeric_limits<double>::infinity());
  registry.GetGauge("c", "C.")->Set(std::nan(""));
  registry.GetGauge("d", "D.")->Set(1e20);
  registry.GetGauge("e", "E.")->Set(0.1);
  registry.GetGauge("f", "F.")->Set(-42);
  std::string text = registry.RenderText();
  EXPECT_THAT(text, HasSubstr("\na +Inf\n"));
  EXPECT_THAT(text, HasSubstr("\nb -Inf\n"));
  EXPECT_THAT(text, HasSubstr("\nc NaN\n"));
  EXPECT_THAT(text, HasSubstr("\nd 1e+20\n"));
  EXPECT_THAT(text, HasSubstr("\ne 0.1\n"));
  EXPECT_THAT(text, HasSubstr("\nf -42\n"));
}

TEST(PrometheusMetricsTest, HistogramRendersCumulativeBucketsSumAndCount) {
  MetricsRegistry registry;
  Histogram* histogram = registry.GetHistogram("retort_latency_seconds", "Request latency.",
                                               {0.25, 1, 4}, {{"model", "cnn"}});
  // Values exactly representable in binary so that the sum is exact.
  for (double v : {0.125, 0.25, 0.5, 2.0, 8.0}) histogram->Observe(v);
  EXPECT_EQ(registry.RenderText(),
            "# HELP retort_latency_seconds Request latency.\n"
            "# TYPE retort_latency_seconds histogram\n"
            "retort_latency_seconds_bucket{model=\"cnn\",le=\"0.25\"} 2\n"
            "retort_latency_seconds_bucket{model=\"cnn\",le=\"1\"} 3\n"
            "retort_latency_seconds_bucket{model=\"cnn\",le=\"4\"} 4\n"
            "retort_latency_seconds_bucket{model=\"cnn\",le=\"+Inf\"} 5\n"
            "retort_latency_seconds_sum{model=\"cnn\"} 10.875\n"
            "retort_latency_seconds_count{model=\"cnn\"} 5\n");
  Histogram::Snapshot snapshot = histogram->snapshot();
  EXPECT_THAT(snapshot.cumulative_counts, ElementsAre(2, 3, 4, 5));
  EXPECT_EQ(snapshot.count, 5u);
  EXPECT_EQ(snapshot.sum, 10.875);
}

TEST(PrometheusMetricsTest, HistogramWithoutLabelsOrBoundsHasOnlyInf) {
  MetricsRegistry registry;
  Histogram* histogram = registry.GetHistogram("retort_sizes_bytes", "Sizes.", {});
  histogram->Observe(3);
  EXPECT_EQ(registry.RenderText(),
            "# HELP retort_sizes_bytes Sizes.\n"
            "# TYPE retort_sizes_bytes histogram\n"
            "retort_sizes_bytes_bucket{le=\"+Inf\"} 1\n"
            "retort_sizes_bytes_sum 3\n"
            "retort_sizes_bytes_count 1\n");
}

TEST(PrometheusMetricsTest, HistogramNaNGoesToInfBucket) {
  MetricsRegistry registry;
  Histogram* histogram = registry.GetHistogram("h", "H.", {1});
  histogram->Observe(std::nan(""));
  histogram->Observe(0.5);
  EXPECT_THAT(histogram->snapshot().cumulative_counts, ElementsAre(1, 2));
  EXPECT_THAT(registry.RenderText(), HasSubstr("h_sum NaN\n"));
}

TEST(PrometheusMetricsTest, HistogramBoundsAreNormalized) {
  MetricsRegistry registry;
  const double inf = std::numeric_limits<double>::infinity();
  Histogram* a = registry.GetHistogram("h", "H.", {4, 1, 1, inf, std::nan("")});
  EXPECT_THAT(a->upper_bounds(), ElementsAre(1, 4));
  Histogram* b = registry.GetHistogram("h", "H.", {1, 4});
  EXPECT_EQ(a, b);
  EXPECT_THAT(registry.RegistrationErrors(), IsEmpty());
}

TEST(PrometheusMetricsTest, EscapesLabelValuesAndHelp) {
  MetricsRegistry registry;
  registry
      .GetCounter("retort_paths_total", "Paths seen; \"quoted\", back\\slash\nsecond line.",
                  {{"path", "C:\\dir\\\"x\"\nend"}})
      ->Increment();
  EXPECT_EQ(registry.RenderText(),
            "# HELP retort_paths_total Paths seen; \"quoted\", back\\\\slash\\nsecond line.\n"
            "# TYPE retort_paths_total counter\n"
            "retort_paths_total{path=\"C:\\\\dir\\\\\\\"x\\\"\\nend\"} 1\n");
}

TEST(PrometheusMetricsTest, FamiliesAndSeriesRenderInSortedOrder) {
  MetricsRegistry registry;
  registry.GetGauge("zeta", "Z.", {{"k", "b"}})->Set(1);
  registry.GetGauge("zeta", "Z.", {{"k", "a"}})->Set(2);
  registry.GetCounter("alpha_total", "A.")->Increment();
  registry.GetGauge("mid", "M.", {{"y", "1"}, {"x", "2"}})->Set(3);
  const std::string expected =
      "# HELP alpha_total A.\n"
      "# TYPE alpha_total counter\n"
      "alpha_total 1\n"
      "# HELP mid M.\n"
      "# TYPE mid gauge\n"
      "mid{x=\"2\",y=\"1\"} 3\n"
      "# HELP zeta Z.\n"
      "# TYPE zeta gauge\n"
      "zeta{k=\"a\"} 2\n"
      "zeta{k=\"b\"} 1\n";
  EXPECT_EQ(registry.RenderText(), expected);
  EXPECT_EQ(registry.RenderText(), expected);
}

TEST(PrometheusMetricsTest, SameNameAndLabelsReturnSameObject) {
  MetricsRegistry registry;
  Counter* a = registry.GetCounter("c_total", "C.", {{"x", "1"}, {"y", "2"}});
  Counter* b = registry.GetCounter("c_total", "Other help is ignored.", {{"y", "2"}, {"x", "1"}});
  Counter* c = registry.GetCounter("c_total", "C.", {{"x", "1"}, {"y", "3"}});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  Gauge* g = registry.GetGauge("g", "G.");
  EXPECT_EQ(g, registry.GetGauge("g", "G."));
  Histogram* h = registry.GetHistogram("h", "H.", {1, 2}, {{"a", "b"}});
  EXPECT_EQ(h, registry.GetHistogram("h", "H.", {1, 2}, {{"a", "b"}}));
  EXPECT_THAT(registry.RenderText(), HasSubstr("# HELP c_total C.\n"));
  EXPECT_THAT(registry.RegistrationErrors(), IsEmpty());
}

TEST(PrometheusMetricsTest, NameValidation) {
  EXPECT_TRUE(IsValidMetricName("retort_x:y_total"));
  EXPECT_TRUE(IsValidMetricName("_x1"));
  EXPECT_TRUE(IsValidMetricName(":x"));
  EXPECT_FALSE(IsValidMetricName(""));
  EXPECT_FALSE(IsValidMetricName("1x"));
  EXPECT_FALSE(IsValidMetricName("has-dash"));
  EXPECT_FALSE(IsValidMetricName("has space"));
  EXPECT_FALSE(IsValidMetricName("caf\xc3\xa9"));
  EXPECT_TRUE(IsValidLabelName("_a1"));
  EXPECT_FALSE(IsValidLabelName(""));
  EXPECT_FALSE(IsValidLabelName("a:b"));
  EXPECT_FALSE(IsValidLabelName("0a"));
}

TEST(PrometheusMetricsTest, InvalidRegistrationsReturnDetachedSeries) {
  MetricsRegistry registry;
  registry.GetCounter("good_total", "Good.")->Increment();
  const std::string clean = registry.RenderText();

  std::vector<Counter*> detached = {
      registry.GetCounter("1bad_total", "Bad."),
      registry.GetCounter("bad-name_total", "Bad."),
      registry.GetCounter("", "Bad."),
      registry.GetCounter("c_total", "Bad.", {{"bad-label", "x"}}),
      registry.GetCounter("c_total", "Bad.", {{"__reserved", "x"}}),
      registry.GetCounter("c_total", "Bad.", {{"a", "x"}, {"a", "y"}}),
  };
  for (Counter* c : detached) {
    ASSERT_NE(c, nullptr);
    c->Increment(7);  // Usable, just not exported.
    EXPECT_EQ(c->value(), 7.0);
  }
  Histogram* with_le = registry.GetHistogram("h_seconds", "Bad.", {1}, {{"le", "x"}});
  ASSERT_NE(with_le, nullptr);
  with_le->Observe(1);

  EXPECT_EQ(registry.RenderText(), clean);
  EXPECT_THAT(registry.RegistrationErrors(), SizeIs(7));

  // Repeating a mistake returns the same detached series and logs nothing new.
  EXPECT_EQ(registry.GetCounter("1bad_total", "Bad."), detached[0]);
  EXPECT_THAT(registry.RegistrationErrors(), SizeIs(7));
}

TEST(PrometheusMetricsTest, TypeAndBucketConflictsReturnDetachedSeries) {
  MetricsRegistry registry;
  Counter* counter = registry.GetCounter("x_total", "X.");
  counter->Increment();
  Histogram* histogram = registry.GetHistogram("h_seconds", "H.", {1, 2});
  histogram->Observe(1);
  const std::string clean = registry.RenderText();

  Gauge* gauge = registry.GetGauge("x_total", "X.");
  ASSERT_NE(gauge, nullptr);
  gauge->Set(100);
  Histogram* other_bounds = registry.GetHistogram("h_seconds", "H.", {1, 2, 3});
  ASSERT_NE(other_bounds, nullptr);
  EXPECT_NE(other_bounds, histogram);
  EXPECT_THAT(other_bounds->upper_bounds(), ElementsAre(1, 2, 3));
  other_bounds->Observe(5);
  Counter* histogram_as_counter = registry.GetCounter("h_seconds", "H.");
  ASSERT_NE(histogram_as_counter, nullptr);

  EXPECT_EQ(registry.RenderText(), clean);
  std::vector<std::string> errors = registry.RegistrationErrors();
  ASSERT_THAT(errors, SizeIs(3));
  EXPECT_THAT(errors[0], HasSubstr("x_total is a counter, not a gauge"));
  EXPECT_THAT(errors[1], HasSubstr("other buckets"));
  EXPECT_THAT(errors[2], HasSubstr("h_seconds is a histogram, not a counter"));
}

TEST(PrometheusMetricsTest, ConcurrentUpdatesGiveExactTotals) {
  MetricsRegistry registry;
  constexpr int kThreads = 8;
  constexpr int kIterations = 20000;
  std::vector<Counter*> counters(kThreads);
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&registry, &counters, t] {
      // Every thread registers the same series concurrently.
      Counter* counter = registry.GetCounter("ops_total", "Ops.", {{"kind", "shared"}});
      counters[t] = counter;
      Gauge* gauge = registry.GetGauge("level", "Level.");
      Histogram* histogram = registry.GetHistogram("sizes", "Sizes.", {1, 10, 100});
      Counter* own = registry.GetCounter("ops_total", "Ops.", {{"kind", absl::StrCat("t", t)}});
      for (int i = 0; i < kIterations; ++i) {
        counter->Increment();
        own->Increment(2);
        gauge->Add(1);
        histogram->Observe(static_cast<double>(i % 4 == 0 ? 0.5 : 50));
      }
    });
  }
  // Render while the writers run; it must not crash or tear.
  std::thread renderer([&registry] {
    for (int i = 0; i < 50; ++i) EXPECT_THAT(registry.RenderText(), Not(IsEmpty()));
  });
  for (std::thread& thread : threads) thread.join();
  renderer.join();

  for (Counter* c : counters) EXPECT_EQ(c, counters[0]);
  EXPECT_EQ(counters[0]->value(), kThreads * kIterations);
  EXPECT_EQ(registry.GetGauge("level", "Level.")->value(), kThreads * kIterations);
  Histogram::Snapshot snapshot = registry.GetHistogram("sizes", "Sizes.", {1, 10, 100})->snapshot();
  const uint64_t total = uint64_t{kThreads} * kIterations;
  const uint64_t small = total / 4;  // Every fourth observation is 0.5, the rest 50.
  EXPECT_EQ(snapshot.count, total);
  EXPECT_THAT(snapshot.cumulative_counts, ElementsAre(small, small, total, total));
  // Multiples of 0.5 far below 2^53 add exactly in any order.
  EXPECT_EQ(snapshot.sum,
            static_cast<double>(small) * 0.5 + static_cast<double>(total - small) * 50.0);
  std::string text = registry.RenderText();
  EXPECT_THAT(text, HasSubstr(absl::StrCat("ops_total{kind=\"shared\"} ", total, "\n")));
  EXPECT_THAT(text,
              HasSubstr(absl::StrCat("ops_total{kind=\"t3\"} ", int64_t{2} * kIterations, "\n")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat("sizes_count ", total, "\n")));
}

TEST(PrometheusMetricsTest, BucketHelpers) {
  EXPECT_THAT(ExponentialBuckets(1, 2, 4), ElementsAre(1, 2, 4, 8));
  EXPECT_THAT(ExponentialBuckets(0.001, 10, 3), SizeIs(3));
  EXPECT_THAT(ExponentialBuckets(0, 2, 4), IsEmpty());
  EXPECT_THAT(ExponentialBuckets(1, 1, 4), IsEmpty());
  EXPECT_THAT(ExponentialBuckets(1, 2, 0), IsEmpty());
  EXPECT_THAT(LinearBuckets(0, 0.5, 3), ElementsAre(0, 0.5, 1));
  EXPECT_THAT(LinearBuckets(0, 0, 3), IsEmpty());
}

// ---------------------------------------------------------------------------
// HTTP exposition. Every client socket has a receive timeout, so no test can
// hang on a misbehaving server.

int Connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  timeval tv{};
  tv.tv_sec = 20;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Reads until the server closes (or the receive timeout fires).
std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

struct HttpResponse {
  std::string status_line;
  std::vector<std::string> headers;
  std::string body;
};

HttpResponse Parse(const std::string& raw) {
  HttpResponse response;
  size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    response.status_line = raw;
    return response;
  }
  std::vector<std::string> lines = absl::StrSplit(raw.substr(0, head_end), "\r\n");
  response.status_line = lines[0];
  response.headers.assign(lines.begin() + 1, lines.end());
  response.body = raw.substr(head_end + 4);
  return response;
}

HttpResponse Fetch(int port, const std::string& request) {
  int fd = Connect(port);
  if (fd < 0) return {"connect failed", {}, ""};
  SendAll(fd, request);
  std::string raw = ReadAll(fd);
  ::close(fd);
  return Parse(raw);
}

HttpResponse Get(int port, const std::string& path) {
  return Fetch(port, absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
}

std::unique_ptr<MetricsHttpServer> StartServer(MetricsHttpServer::Options options) {
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Create(std::move(options));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(server).value() : nullptr;
}

void FillRegistry(MetricsRegistry& registry) {
  registry
      .GetCounter("retort_requests_total", "Requests served.",
                  {{"method", "Distill"}, {"code", "OK"}})
      ->Increment(12);
  registry
      .GetCounter("retort_requests_total", "Requests served.",
                  {{"method", "Distill"}, {"code", "INVALID_ARGUMENT"}})
      ->Increment(1);
  registry.GetGauge("retort_queue_depth", "Requests waiting for a batch.")->Set(3);
  registry
      .GetGauge("retort_label_escapes", "Gauge with \\ and\nnewline in help.",
                {{"path", "C:\\tmp\\\"q\"\nx"}})
      ->Set(-0.5);
  Histogram* latency =
      registry.GetHistogram("retort_request_duration_seconds", "Request latency.",
                            ExponentialBuckets(0.001, 4, 6), {{"method", "Distill"}});
  for (double v : {0.0005, 0.002, 0.02, 0.3, 7.0}) latency->Observe(v);
}

TEST(MetricsHttpServerTest, ServesMetrics) {
  MetricsRegistry registry;
  FillRegistry(registry);
  MetricsHttpServer::Options options;
  options.render = [&registry] { return registry.RenderText(); };
  std::unique_ptr<MetricsHttpServer> server = StartServer(options);
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->port(), 0);

  HttpResponse response = Get(server->port(), "/metrics");
  EXPECT_EQ(response.status_line, "HTTP/1.1 200 OK");
  EXPECT_THAT(response.headers,
              testing::Contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"));
  EXPECT_THAT(response.headers,
              testing::Contains(absl::StrCat("Content-Length: ", response.body.size())));
  EXPECT_THAT(response.headers, testing::Contains("Connection: close"));
  EXPECT_EQ(response.body, registry.RenderText());
  EXPECT_THAT(response.body, HasSubstr("retort_request_duration_seconds_bucket{method=\"Distill\","
                                       "le=\"+Inf\"} 5\n"));

  // A query string is ignored; HTTP/1.0 works too.
  EXPECT_EQ(Fetch(server->port(), "GET /metrics?name[]=x HTTP/1.0\r\n\r\n").status_line,
            "HTTP/1.1 200 OK");
}

TEST(MetricsHttpServerTest, ErrorStatuses) {
  MetricsHttpServer::Options options;
  options.render = [] { return std::string("x 1\n"); };
  std::unique_ptr<MetricsHttpServer> server = StartServer(options);
  ASSERT_NE(server, nullptr);
  const int port = server->port();

  HttpResponse not_found = Get(port, "/");
  EXPECT_EQ(not_found.status_line, "HTTP/1.1 404 Not Found");
  EXPECT_THAT(not_found.headers, testing::Contains("Connection: close"));
  EXPECT_EQ(Get(port, "/metricsx").status_line, "HTTP/1.1 404 Not Found");

  HttpResponse post = Fetch(port, "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_EQ(post.status_line, "HTTP/1.1 405 Method Not Allowed");
  EXPECT_THAT(post.headers, testing::Contains("Allow: GET"));

  EXPECT_EQ(Fetch(port, "hello there\r\n\r\n").status_line, "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(Fetch(port, "GET metrics HTTP/1.1\r\n\r\n").status_line, "HTTP/1.1 400 Bad Request");

  // A request head that never ends is cut off at max_request_bytes.
  EXPECT_EQ(Fetch(port, std::string(20000, 'a')).status_line,
            "HTTP/1.1 431 Request Header Fields Too Large");
  EXPECT_EQ(Fetch(port, "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(20000, 'b')).status_line,
            "HTTP/1.1 431 Request Header Fields Too Large");

  // Still serving.
  EXPECT_EQ(Get(port, "/metrics").body, "x 1\n");
}

TEST(MetricsHttpServerTest, RenderThrowingGives500) {
  MetricsHttpServer::Options options;
  options.render = []() -> std::string { throw std::runtime_error("boom"); };
  std::unique_ptr<MetricsHttpServer> server = StartServer(options);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Get(server->port(), "/metrics").status_line, "HTTP/1.1 500 Internal Server Error");
}

TEST(MetricsHttpServerTest, IdleClientDoesNotBlockOthers) {
  MetricsHttpServer::Options options;
  options.render = [] { return std::string("x 1\n"); };
  std::unique_ptr<MetricsHttpServer> server = StartServer(options);
  ASSERT_NE(server, nullptr);

  int idle = Connect(server->port());
  ASSERT_GE(idle, 0);
  int half = Connect(server->port());
  ASSERT_GE(half, 0);
  ASSERT_TRUE(SendAll(half, "GET /metr"));  // A request that stalls midway.

  HttpResponse response = Get(server->port(), "/metrics");
  EXPECT_EQ(response.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(response.body, "x 1\n");
  ::close(idle);
  ::close(half);
  // The destructor returns although nothing else happens on the server.
}

TEST(MetricsHttpServerTest, SlowClientsAreTimedOutAndConnectionsBounded) {
  MetricsHttpServer::Options options;
  options.render = [] { return std::string("x 1\n"); };
  options.connection_timeout = absl::Milliseconds(200);
  options.max_connections = 2;
  std::unique_ptr<MetricsHttpServer> server = StartServer(options);
  ASSERT_NE(server, nullptr);

  // Three silent clients: two fill every slot, one waits in the backlog.
  std::vector<int> idle;
  for (int i = 0; i < 3; ++i) {
    idle.push_back(Connect(server->port()));
    ASSERT_GE(idle.back(), 0);
  }
  // Served once the silent ones are timed out.
  EXPECT_EQ(Get(server->port(), "/metrics").status_line, "HTTP/1.1 200 OK");
  // The server closed the silent connections without a response.
  for (int fd : idle) {
    char c;
    EXPECT_EQ(::recv(fd, &c, 1, 0), 0);
    ::close(fd);
  }
}

TEST(MetricsHttpServerTest, SurvivesGarbageAndResets) {
  MetricsHttpServer::Options options;
  options.render = [] { return std::string("x 1\n"); };
  std::unique_ptr<MetricsHttpServer> server = StartServer(options);
  ASSERT_NE(server, nullptr);

  std::string garbage;
  for (int i = 0; i < 3000; ++i) garbage += static_cast<char>((i * 131 + 7) % 256);
  for (int round = 0; round < 5; ++round) {
    int fd = Connect(server->port());
    ASSERT_GE(fd, 0);
    SendAll(fd, garbage.substr(0, 500 * round + 1));
    if (round % 2 == 0) {
      linger reset{1, 0};  // close() sends RST.
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    }
    ::close(fd);
  }
  int fd = Connect(server->port());
  ASSERT_GE(fd, 0);
  SendAll(fd, std::string(1, '\0') + "\r\n\r\n");
  EXPECT_EQ(Parse(ReadAll(fd)).status_line, "HTTP/1.1 400 Bad Request");
  ::close(fd);
  EXPECT_EQ(Get(server->port(), "/metrics").status_line, "HTTP/1.1 200 OK");
}

TEST(MetricsHttpServerTest, ListensOnAllInterfaces) {
  MetricsHttpServer::Options options;
  options.host = "0.0.0.0";
  options.render = [] { return std::string("x 1\n"); };
  std::unique_ptr<MetricsHttpServer> server = StartServer(options);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Get(server->port(), "/metrics").status_line, "HTTP/1.1 200 OK");
}

TEST(MetricsHttpServerTest, CreateErrors) {
  MetricsHttpServer::Options options;
  options.render = [] { return std::string(); };
  std::unique_ptr<MetricsHttpServer> first = StartServer(options);
  ASSERT_NE(first, nullptr);

  MetricsHttpServer::Options same_port = options;
  same_port.port = first->port();
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> taken = MetricsHttpServer::Create(same_port);
  ASSERT_FALSE(taken.ok());
  EXPECT_THAT(std::string(taken.status().message()),
              HasSubstr(absl::StrCat("127.0.0.1:", first->port())));

  MetricsHttpServer::Options bad_host = options;
  bad_host.host = "localhost";
  EXPECT_EQ(MetricsHttpServer::Create(bad_host).status().code(),
            absl::StatusCode::kInvalidArgument);
  MetricsHttpServer::Options bad_port = options;
  bad_port.port = 70000;
  EXPECT_EQ(MetricsHttpServer::Create(bad_port).status().code(),
            absl::StatusCode::kInvalidArgument);
  MetricsHttpServer::Options no_render;
  EXPECT_EQ(MetricsHttpServer::Create(no_render).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Runs `command` through the shell; returns its exit code and fills `output`.
int RunShell(const std::string& command, std::string* output) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) output->append(buf, n);
  int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(MetricsHttpServerTest, PromtoolAcceptsTheExposition) {
  std::string which;
  if (RunShell("command -v promtool 2>/dev/null || ls /usr/bin/promtool 2>/dev/null", &which) !=
          0 ||
      which.empty()) {
    FAIL() << "promtool not found: install Debian's `prometheus` package "
              "(apt-get install prometheus; run.sh installs it)";
  }
  std::string promtool(absl::StripAsciiWhitespace(which.substr(0, which.find('\n'))));

  MetricsRegistry registry;
  FillRegistry(registry);
  MetricsHttpServer::Options options;
  options.render = [&registry] { return registry.RenderText(); };
  std::unique_ptr<MetricsHttpServer> server = StartServer(options);
  ASSERT_NE(server, nullptr);
  HttpResponse response = Get(server->port(), "/metrics");
  ASSERT_EQ(response.status_line, "HTTP/1.1 200 OK");

  const std::string path =
      absl::StrCat(testing::TempDir(), "/prometheus_test_", ::getpid(), ".prom");
  {
    std::ofstream file(path, std::ios::binary);
    file << response.body;
    ASSERT_TRUE(file.good());
  }
  std::string output;
  int code = RunShell(absl::StrCat(promtool, " check metrics < '", path, "' 2>&1"), &output);
  std::remove(path.c_str());
  EXPECT_EQ(code, 0) << "promtool check metrics said:\n" << output << "\nfor:\n" << response.body;
}

}  // namespace
}  // namespace retort
