// DynamicBatcher: gathers requests from many streams into one forward pass.
//
// Work items wait in a FIFO queue. A worker takes the oldest items whose rows
// fit in `max_batch_rows` as soon as that many rows are waiting or the oldest
// item has waited `max_delay`, runs the teacher once on their concatenated
// inputs, and hands each item its own rows: log_softmax(logits / T) at the
// item's temperature, plus the hidden layers it asked for. In deterministic
// mode every item runs on its own, so its result never depends on what else
// was queued.
//
// Items whose `cancelled` flag is set before a worker takes them are dropped
// without running (their callback gets CANCELLED). Thread-safe.
#ifndef RETORT_TEACHER_DYNAMIC_BATCHER_H_
#define RETORT_TEACHER_DYNAMIC_BATCHER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/prometheus_metrics.h"
#include "teacher/teacher.h"
#include "teacher/wire_codec.h"

namespace retort::teacher {

class DynamicBatcher {
 public:
  struct Options {
    // Rows (or tokens) in one forward pass. 128 measured best for the CNN
    // teacher on CPU (merging 128-row requests into 256 or 512 rows lost 25
    // and 40 %, docs/performance.md); GPUs want more.
    int64_t max_batch_rows = 128;
    // How long the oldest queued item may wait for others. 0 (measured best
    // on CPU, docs/performance.md): a free worker takes whatever is queued at
    // once, and batches form from what arrives while a forward pass runs.
    absl::Duration max_delay = absl::ZeroDuration();
    int64_t max_queue_rows = 16384;  // beyond this Submit is RESOURCE_EXHAUSTED
    bool deterministic = false;
    int workers = 1;
    MetricsRegistry* metrics = nullptr;  // optional; must outlive the batcher
  };

  struct Work {
    torch::Tensor inputs;  // validated: [rows, ...]
    double temperature = 1.0;
    std::vector<std::string> hidden_layers;
    std::shared_ptr<std::atomic<bool>> cancelled;  // may be null
    // Called exactly once, on a worker thread (or in Submit's caller when
    // Submit fails it returns the error instead and never calls this).
    std::function<void(absl::StatusOr<Answer>)> done;
  };

  static absl::StatusOr<std::unique_ptr<DynamicBatcher>> Create(Options options,
                                                                std::shared_ptr<Teacher> teacher);
  // Stops the workers after the queue is empty.
  ~DynamicBatcher();

  // Queues `work`. RESOURCE_EXHAUSTED when the queue holds too many rows,
  // UNAVAILABLE after Shutdown.
  absl::Status Submit(Work work);

  // Fails queued work with UNAVAILABLE and stops the workers. Idempotent.
  void Shutdown();

  // Call after setting a queued item's `cancelled` flag: a worker waiting
  // for its batch to fill drops it now rather than after max_delay.
  void Wake();

  int64_t queued_rows() const;
  int64_t in_flight_rows() const;

 private:
  struct Item {
    Work work;
    int64_t rows;
    absl::Time enqueued;
  };

  DynamicBatcher(Options options, std::shared_ptr<Teacher> teacher);
  void WorkerLoop();
  // Takes the next batch from the queue; empty when shutting down.
  std::vector<Item> NextBatch();
  void Run(std::vector<Item> batch);
  bool FrontCancelled() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const std::shared_ptr<Teacher> teacher_;
  mutable absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_rows_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t in_flight_rows_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;

  // Metrics (null when options_.metrics is null).
  Histogram* batch_rows_ = nullptr;
  Histogram* batch_requests_ = nullptr;
  Histogram* forward_seconds_ = nullptr;
  Histogram* queue_seconds_ = nullptr;
  Gauge* queue_rows_gauge_ = nullptr;
  Counter* batches_ = nullptr;
};

}  // namespace retort::teacher

#endif  // RETORT_TEACHER_DYNAMIC_BATCHER_H_
