#include "common/progress.h"

#include <unistd.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace retort {

std::string HumanDuration(absl::Duration d) {
  int64_t s = absl::ToInt64Seconds(d);
  if (s < 0) s = 0;
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

ProgressLine::ProgressLine(Options options) : options_(std::move(options)) {
  if (options_.redraw < 0) options_.redraw = ::isatty(::fileno(options_.out));
  start_ = options_.clock->Now();
  last_print_ = start_;
}

std::string ProgressLine::Format(int64_t done_units, int64_t samples,
                                 const std::string& detail) const {
  absl::Duration elapsed = options_.clock->Now() - start_;
  double seconds = absl::ToDoubleSeconds(elapsed);
  std::string text = options_.label;
  if (options_.total_units > 0) {
    double pct =
        100.0 * static_cast<double>(done_units) / static_cast<double>(options_.total_units);
    absl::StrAppendFormat(&text, " %d/%d (%.1f%%)", done_units, options_.total_units, pct);
  } else {
    absl::StrAppendFormat(&text, " %d", done_units);
  }
  if (!detail.empty()) absl::StrAppend(&text, " | ", detail);
  if (seconds > 0) {
    absl::StrAppendFormat(&text, " | %.0f %s/s", static_cast<double>(samples) / seconds,
                          options_.rate_unit);
  }
  if (options_.total_units > 0 && done_units > 0 && seconds > 0) {
    double remaining = seconds * static_cast<double>(options_.total_units - done_units) /
                       static_cast<double>(done_units);
    absl::StrAppend(&text, " | ETA ", HumanDuration(absl::Seconds(remaining)));
  }
  return text;
}

bool ProgressLine::Due() const {
  const absl::Duration interval = options_.redraw ? absl::Milliseconds(250) : options_.min_interval;
  return options_.clock->Now() - (printed_ ? last_print_ : start_) >= interval;
}

void ProgressLine::Update(int64_t done_units, int64_t samples, const std::string& detail,
                          bool force) {
  if (!force && !Due()) return;
  const absl::Time now = options_.clock->Now();
  std::string text = Format(done_units, samples, detail);
  if (options_.redraw) {
    std::fprintf(options_.out, "\r\033[K%s", text.c_str());
  } else {
    std::fprintf(options_.out, "%s\n", text.c_str());
  }
  std::fflush(options_.out);
  last_print_ = now;
  printed_ = true;
}

void ProgressLine::Finish() {
  if (options_.redraw && printed_) {
    std::fprintf(options_.out, "\n");
    std::fflush(options_.out);
  }
  printed_ = false;
}

}  // namespace retort
