#include "common/prometheus_metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace retort {
namespace {

void AtomicAdd(std::atomic<double>& target, double v) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + v, std::memory_order_relaxed)) {
  }
}

// Shortest text that reads back as the same double, in the spelling
// Prometheus uses for the special values.
std::string FormatDouble(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::to_chars_result result = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, result.ptr);
}

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string EscapeHelp(absl::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// `{a="x",b="y"}` for sorted labels plus an optional trailing `le`; empty
// when there are no labels at all.
std::string FormatLabels(const MetricLabels& labels, const std::string* le = nullptr) {
  if (labels.empty() && le == nullptr) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [name, value] : labels) {
    if (!first) out += ',';
    first = false;
    absl::StrAppend(&out, name, "=\"", EscapeLabelValue(value), "\"");
  }
  if (le != nullptr) {
    if (!first) out += ',';
    absl::StrAppend(&out, "le=\"", *le, "\"");
  }
  out += '}';
  return out;
}

// A printable description of a registration, for error messages and as the
// key of detached series.
std::string Describe(absl::string_view type, absl::string_view name, const MetricLabels& labels,
                     const std::vector<double>* upper_bounds = nullptr) {
  std::string out = absl::StrCat(type, " ", name, "{");
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out += ',';
    absl::StrAppend(&out, labels[i].first, "=\"", EscapeLabelValue(labels[i].second), "\"");
  }
  out += '}';
  if (upper_bounds != nullptr) {
    absl::StrAppend(&out, " buckets [",
                    absl::StrJoin(*upper_bounds, ",",
                                  [](std::string* s, double b) { s->append(FormatDouble(b)); }),
                    "]");
  }
  return out;
}

}  // namespace

const char* MetricsRegistry::TypeName(Type type) {
  switch (type) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

bool IsValidMetricName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool IsValidLabelName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

void Counter::Increment(double v) {
  if (!(v >= 0.0)) return;  // Negative or NaN.
  AtomicAdd(value_, v);
}

void Gauge::Add(double v) { AtomicAdd(value_, v); }

std::vector<double> Histogram::NormalizeBounds(std::vector<double> upper_bounds) {
  upper_bounds.erase(std::remove_if(upper_bounds.begin(), upper_bounds.end(),
                                    [](double b) { return !std::isfinite(b); }),
                     upper_bounds.end());
  std::sort(upper_bounds.begin(), upper_bounds.end());
  upper_bounds.erase(std::unique(upper_bounds.begin(), upper_bounds.end()), upper_bounds.end());
  return upper_bounds;
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(NormalizeBounds(std::move(upper_bounds))),
      bucket_counts_(new std::atomic<uint64_t>[upper_bounds_.size() + 1]) {
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    bucket_counts_[i].store(0, std::memory_order_relaxed);
  }
}

void Histogram::Observe(double v) {
  // First bound >= v; NaN compares false everywhere and lands in +Inf.
  size_t bucket = upper_bounds_.size();
  if (!std::isnan(v)) {
    bucket = static_cast<size_t>(std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), v) -
                                 upper_bounds_.begin());
  }
  bucket_counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot snapshot;
  snapshot.cumulative_counts.resize(upper_bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    running += bucket_counts_[i].load(std::memory_order_relaxed);
    snapshot.cumulative_counts[i] = running;
  }
  snapshot.count = running;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

void MetricsRegistry::RecordError(const std::string& message) {
  if (!seen_errors_.insert(message).second) return;
  errors_.push_back(message);
  std::fprintf(stderr, "MetricsRegistry: %s; using a detached series that is never exported\n",
               message.c_str());
}

MetricsRegistry::Family* MetricsRegistry::FindOrAddFamily(Type type, absl::string_view name,
                                                          absl::string_view help,
                                                          const std::vector<double>& upper_bounds,
                                                          const MetricLabels& labels,
                                                          MetricLabels* canonical) {
  const char* type_name = TypeName(type);
  if (!IsValidMetricName(name)) {
    RecordError(absl::StrCat("invalid metric name \"", name, "\""));
    return nullptr;
  }
  *canonical = labels;
  std::sort(canonical->begin(), canonical->end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 0; i < canonical->size(); ++i) {
    const std::string& label = (*canonical)[i].first;
    if (!IsValidLabelName(label)) {
      RecordError(absl::StrCat("invalid label name \"", label, "\" on ", name));
      return nullptr;
    }
    if (label.size() >= 2 && label[0] == '_' && label[1] == '_') {
      RecordError(absl::StrCat("reserved label name \"", label, "\" on ", name));
      return nullptr;
    }
    if (type == Type::kHistogram && label == "le") {
      RecordError(absl::StrCat("label \"le\" is reserved on histogram ", name));
      return nullptr;
    }
    if (i > 0 && (*canonical)[i - 1].first == label) {
      RecordError(absl::StrCat("duplicate label name \"", label, "\" on ", name));
      return nullptr;
    }
  }
  auto it = families_.find(name);
  if (it == families_.end()) {
    Family family;
    family.type = type;
    family.help = std::string(help);
    family.upper_bounds = upper_bounds;
    it = families_.emplace(std::string(name), std::move(family)).first;
    return &it->second;
  }
  Family& family = it->second;
  if (family.type != type) {
    RecordError(absl::StrCat(name, " is a ", TypeName(family.type), ", not a ", type_name));
    return nullptr;
  }
  if (type == Type::kHistogram && family.upper_bounds != upper_bounds) {
    RecordError(absl::StrCat("histogram ", name, " registered again with other buckets: ",
                             Describe("histogram", name, {}, &upper_bounds), " vs ",
                             Describe("histogram", name, {}, &family.upper_bounds)));
    return nullptr;
  }
  return &family;
}

Counter* MetricsRegistry::GetCounter(absl::string_view name, absl::string_view help,
                                     const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  MetricLabels canonical;
  Family* family = FindOrAddFamily(Type::kCounter, name, help, {}, labels, &canonical);
  if (family == nullptr) {
    std::unique_ptr<Counter>& detached = detached_counters_[Describe("counter", name, labels)];
    if (detached == nullptr) detached = std::make_unique<Counter>();
    return detached.get();
  }
  std::unique_ptr<Counter>& series = family->counters[canonical];
  if (series == nullptr) series = std::make_unique<Counter>();
  return series.get();
}

Gauge* MetricsRegistry::GetGauge(absl::string_view name, absl::string_view help,
                                 const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  MetricLabels canonical;
  Family* family = FindOrAddFamily(Type::kGauge, name, help, {}, labels, &canonical);
  if (family == nullptr) {
    std::unique_ptr<Gauge>& detached = detached_gauges_[Describe("gauge", name, labels)];
    if (detached == nullptr) detached = std::make_unique<Gauge>();
    return detached.get();
  }
  std::unique_ptr<Gauge>& series = family->gauges[canonical];
  if (series == nullptr) series = std::make_unique<Gauge>();
  return series.get();
}

Histogram* MetricsRegistry::GetHistogram(absl::string_view name, absl::string_view help,
                                         std::vector<double> upper_bounds,
                                         const MetricLabels& labels) {
  std::vector<double> bounds = Histogram::NormalizeBounds(std::move(upper_bounds));
  absl::MutexLock lock(&mu_);
  MetricLabels canonical;
  Family* family = FindOrAddFamily(Type::kHistogram, name, help, bounds, labels, &canonical);
  if (family == nullptr) {
    std::unique_ptr<Histogram>& detached =
        detached_histograms_[Describe("histogram", name, labels, &bounds)];
    if (detached == nullptr) detached = std::make_unique<Histogram>(bounds);
    return detached.get();
  }
  std::unique_ptr<Histogram>& series = family->histograms[canonical];
  if (series == nullptr) series = std::make_unique<Histogram>(family->upper_bounds);
  return series.get();
}

std::string MetricsRegistry::RenderText() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& [name, family] : families_) {
    absl::StrAppend(&out, "# HELP ", name, " ", EscapeHelp(family.help), "\n");
    absl::StrAppend(&out, "# TYPE ", name, " ", TypeName(family.type), "\n");
    for (const auto& [labels, counter] : family.counters) {
      absl::StrAppend(&out, name, FormatLabels(labels), " ", FormatDouble(counter->value()), "\n");
    }
    for (const auto& [labels, gauge] : family.gauges) {
      absl::StrAppend(&out, name, FormatLabels(labels), " ", FormatDouble(gauge->value()), "\n");
    }
    for (const auto& [labels, histogram] : family.histograms) {
      Histogram::Snapshot snapshot = histogram->snapshot();
      const std::vector<double>& bounds = histogram->upper_bounds();
      for (size_t i = 0; i <= bounds.size(); ++i) {
        std::string le = i < bounds.size() ? FormatDouble(bounds[i]) : "+Inf";
        absl::StrAppend(&out, name, "_bucket", FormatLabels(labels, &le), " ",
                        snapshot.cumulative_counts[i], "\n");
      }
      absl::StrAppend(&out, name, "_sum", FormatLabels(labels), " ", FormatDouble(snapshot.sum),
                      "\n");
      absl::StrAppend(&out, name, "_count", FormatLabels(labels), " ", snapshot.count, "\n");
    }
  }
  return out;
}

std::vector<std::string> MetricsRegistry::RegistrationErrors() const {
  absl::MutexLock lock(&mu_);
  return errors_;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> bounds;
  if (!(start > 0.0) || !(factor > 1.0) || count < 1) return bounds;
  bounds.reserve(static_cast<size_t>(count));
  double bound = start;
  for (int i = 0; i < count; ++i) {
    bounds.push_back(bound);
    bound *= factor;
  }
  return bounds;
}

std::vector<double> LinearBuckets(double start, double width, int count) {
  std::vector<double> bounds;
  if (!(width > 0.0) || count < 1) return bounds;
  bounds.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) bounds.push_back(start + width * i);
  return bounds;
}

}  // namespace retort
