// Prometheus metrics: counters, gauges and histograms kept in a registry that
// renders the text exposition format 0.0.4. Torch-free.
//
//   MetricsRegistry registry;
//   Counter* served = registry.GetCounter("retort_requests_total", "Requests served.",
//                                         {{"method", "Distill"}});
//   served->Increment();
//   std::string text = registry.RenderText();
//
// Thread-safety: every class here is thread-safe. Counter, Gauge and Histogram
// updates are lock-free; the registry takes a mutex to look up or create a
// series and to render.
//
// Ownership: the registry owns every series it hands out; the pointers stay
// valid for the registry's lifetime. Asking again for the same name and label
// set (label order does not matter) returns the same object.
//
// Misuse is a programming error but never crashes: an invalid metric or label
// name, a duplicate label name, a reserved label name ("le" on a histogram, or
// any name starting with "__"), a name already registered with another type,
// or a histogram name already registered with other bounds all return a
// *detached* series. It works like any other but is never rendered; asking
// again with the same arguments returns the same detached series. Each
// distinct problem is printed once to stderr and kept in RegistrationErrors().
// A different HELP text for an existing name is not an error: the first wins.
#ifndef RETORT_COMMON_PROMETHEUS_METRICS_H_
#define RETORT_COMMON_PROMETHEUS_METRICS_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace retort {

// (label name, label value) pairs.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// A monotonically increasing value. Increments that are negative or NaN are
// ignored (a counter never goes down).
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  void Increment(double v = 1.0);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down.
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Counts observations into buckets `value <= upper_bound` plus an implicit
// +Inf bucket, and keeps their sum and count. A NaN observation lands in the
// +Inf bucket only and makes the sum NaN (as client_golang does).
class Histogram {
 public:
  // A consistent-enough view: `cumulative_counts` has one entry per upper
  // bound plus a last one for +Inf, which always equals `count`. `sum` may
  // lag behind concurrent observations.
  struct Snapshot {
    std::vector<uint64_t> cumulative_counts;
    double sum = 0.0;
    uint64_t count = 0;
  };

  // `upper_bounds` is normalized: NaN and infinities dropped, sorted,
  // duplicates removed.
  explicit Histogram(std::vector<double> upper_bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(double v);

  const std::vector<double>& upper_bounds() const { return upper_bounds_; }
  Snapshot snapshot() const;

  // The normalization the constructor applies.
  static std::vector<double> NormalizeBounds(std::vector<double> upper_bounds);

 private:
  const std::vector<double> upper_bounds_;
  // Per-bucket (not cumulative) counts; the last one is the +Inf bucket.
  std::unique_ptr<std::atomic<uint64_t>[]> bucket_counts_;
  std::atomic<double> sum_{0.0};
};

class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Never return null. See the top of this file for what misuse returns.
  Counter* GetCounter(absl::string_view name, absl::string_view help,
                      const MetricLabels& labels = {});
  Gauge* GetGauge(absl::string_view name, absl::string_view help, const MetricLabels& labels = {});
  Histogram* GetHistogram(absl::string_view name, absl::string_view help,
                          std::vector<double> upper_bounds, const MetricLabels& labels = {});

  // The text exposition format 0.0.4: one HELP and TYPE line a family,
  // families sorted by name, series sorted by their (sorted) labels.
  std::string RenderText() const;

  // One message per distinct misuse seen so far, in the order seen.
  std::vector<std::string> RegistrationErrors() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Family {
    Type type;
    std::string help;
    std::vector<double> upper_bounds;  // Histograms only, normalized.
    std::map<MetricLabels, std::unique_ptr<Counter>> counters;
    std::map<MetricLabels, std::unique_ptr<Gauge>> gauges;
    std::map<MetricLabels, std::unique_ptr<Histogram>> histograms;
  };

  static const char* TypeName(Type type);

  // Finds or creates the family and checks the arguments. On success fills
  // `*canonical` (labels sorted by name) and returns the family; on misuse
  // records the error and returns null.
  Family* FindOrAddFamily(Type type, absl::string_view name, absl::string_view help,
                          const std::vector<double>& upper_bounds, const MetricLabels& labels,
                          MetricLabels* canonical) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordError(const std::string& message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Family, std::less<>> families_ ABSL_GUARDED_BY(mu_);
  // Detached series for misuse, keyed by a description of the arguments, so
  // that repeating the same mistake does not grow memory.
  std::map<std::string, std::unique_ptr<Counter>> detached_counters_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<Gauge>> detached_gauges_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<Histogram>> detached_histograms_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> errors_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> seen_errors_ ABSL_GUARDED_BY(mu_);
};

// `count` bounds start, start*factor, start*factor^2, ... Empty when
// start <= 0, factor <= 1 or count < 1.
std::vector<double> ExponentialBuckets(double start, double factor, int count);

// `count` bounds start, start+width, ... Empty when width <= 0 or count < 1.
std::vector<double> LinearBuckets(double start, double width, int count);

// Whether `name` matches [a-zA-Z_:][a-zA-Z0-9_:]* (metric names).
bool IsValidMetricName(absl::string_view name);
// Whether `name` matches [a-zA-Z_][a-zA-Z0-9_]* (label names).
bool IsValidLabelName(absl::string_view name);

}  // namespace retort

#endif  // RETORT_COMMON_PROMETHEUS_METRICS_H_
