// Progress line for long work: "label 12/40 (30.0%) | loss 0.41 | 5120
// samples/s | ETA 1m12s". On a terminal it redraws one line; in logs it
// prints a new line at most every `min_interval`.
//
// Not thread-safe: one owner reports progress.
#ifndef RETORT_COMMON_PROGRESS_H_
#define RETORT_COMMON_PROGRESS_H_

#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/time/time.h"
#include "common/clock.h"

namespace retort {

class ProgressLine {
 public:
  struct Options {
    std::string label;
    int64_t total_units = 0;  // steps (or samples) to do in all
    const Clock* clock = Clock::Real();
    FILE* out = stderr;
    // Whether to redraw in place with '\r'. Defaults to isatty(out).
    int redraw = -1;
    absl::Duration min_interval = absl::Seconds(10);  // when not redrawing
    // What Update's `samples` count, for the rate: "samples/s", "tokens/s".
    std::string rate_unit = "samples";
  };

  explicit ProgressLine(Options options);

  // Whether Update would print now (without `force`). Lets callers skip
  // formatting the detail text on steps that print nothing.
  bool Due() const;

  // Reports that `done_units` of the total are done, `samples` have been
  // processed since Start, and `detail` (for example "loss 0.41") applies.
  // Prints if the interval has passed (or always when `force`).
  void Update(int64_t done_units, int64_t samples, const std::string& detail, bool force = false);

  // Ends the line (a newline after in-place redraws).
  void Finish();

  // Formats the progress text without printing it (exposed for tests).
  std::string Format(int64_t done_units, int64_t samples, const std::string& detail) const;

 private:
  Options options_;
  absl::Time start_;
  absl::Time last_print_;
  bool printed_ = false;
};

// "1h02m", "4m05s", "12s".
std::string HumanDuration(absl::Duration d);

}  // namespace retort

#endif  // RETORT_COMMON_PROGRESS_H_
