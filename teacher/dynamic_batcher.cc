#include "teacher/dynamic_batcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/intra_op_threads.h"
#include "common/torch_status.h"

namespace retort::teacher {

absl::StatusOr<std::unique_ptr<DynamicBatcher>> DynamicBatcher::Create(
    Options options, std::shared_ptr<Teacher> teacher) {
  if (teacher == nullptr) return absl::InvalidArgumentError("DynamicBatcher needs a teacher");
  if (options.max_batch_rows < 1 || options.max_queue_rows < 1 || options.workers < 1 ||
      options.max_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("batcher limits must be positive: max_batch_rows=", options.max_batch_rows,
                     " max_queue_rows=", options.max_queue_rows, " workers=", options.workers));
  }
  return std::unique_ptr<DynamicBatcher>(new DynamicBatcher(options, std::move(teacher)));
}

DynamicBatcher::DynamicBatcher(Options options, std::shared_ptr<Teacher> teacher)
    : options_(options), teacher_(std::move(teacher)) {
  if (MetricsRegistry* m = options_.metrics) {
    batch_rows_ = m->GetHistogram("retort_teacher_batch_rows", "Rows in each forward pass.",
                                  ExponentialBuckets(1, 2, 14));
    batch_requests_ =
        m->GetHistogram("retort_teacher_batch_requests", "Requests merged into each forward pass.",
                        ExponentialBuckets(1, 2, 8));
    forward_seconds_ =
        m->GetHistogram("retort_teacher_forward_seconds", "Time of each batched forward pass.",
                        ExponentialBuckets(0.0001, 2, 16));
    queue_seconds_ =
        m->GetHistogram("retort_teacher_queue_seconds",
                        "Time requests wait in the batcher's queue before their forward pass.",
                        ExponentialBuckets(0.00005, 2, 16));
    queue_rows_gauge_ =
        m->GetGauge("retort_teacher_queue_rows", "Rows waiting in the batcher's queue.");
    batches_ = m->GetCounter("retort_teacher_batches_total", "Forward passes run.");
  }
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

DynamicBatcher::~DynamicBatcher() {
  {
    absl::MutexLock lock(&mu_);
    shutdown_ = true;
  }
  for (std::thread& t : workers_) t.join();
  // Anything still queued (only possible if workers exited early) fails.
  std::deque<Item> left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(queue_);
  }
  for (Item& item : left) item.work.done(absl::UnavailableError("teacher is shutting down"));
}

void DynamicBatcher::Shutdown() {
  std::deque<Item> dropped;
  {
    absl::MutexLock lock(&mu_);
    shutdown_ = true;
    dropped.swap(queue_);
    queued_rows_ = 0;
    if (queue_rows_gauge_ != nullptr) queue_rows_gauge_->Set(0);
  }
  for (Item& item : dropped) item.work.done(absl::UnavailableError("teacher is shutting down"));
}

absl::Status DynamicBatcher::Submit(Work work) {
  const int64_t rows = work.inputs.size(0);
  absl::MutexLock lock(&mu_);
  if (shutdown_) return absl::UnavailableError("teacher is shutting down");
  if (queued_rows_ + rows > options_.max_queue_rows) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the teacher's queue holds ", queued_rows_, " rows; ", rows,
                     " more would pass its limit of ", options_.max_queue_rows,
                     "; retry later or add teachers"));
  }
  queued_rows_ += rows;
  if (queue_rows_gauge_ != nullptr) queue_rows_gauge_->Set(static_cast<double>(queued_rows_));
  queue_.push_back(Item{std::move(work), rows, absl::Now()});
  return absl::OkStatus();
}

bool DynamicBatcher::FrontCancelled() const {
  return !queue_.empty() && queue_.front().work.cancelled != nullptr &&
         queue_.front().work.cancelled->load();
}

void DynamicBatcher::Wake() {
  // Releasing the mutex makes waiting workers re-check their conditions.
  absl::MutexLock lock(&mu_);
}

int64_t DynamicBatcher::queued_rows() const {
  absl::MutexLock lock(&mu_);
  return queued_rows_;
}

int64_t DynamicBatcher::in_flight_rows() const {
  absl::MutexLock lock(&mu_);
  return in_flight_rows_;
}

std::vector<DynamicBatcher::Item> DynamicBatcher::NextBatch() {
  std::vector<Item> batch;
  std::vector<Item> cancelled;
  {
    absl::MutexLock lock(&mu_);
    while (true) {
      // Wait for work.
      mu_.Await(absl::Condition(
          +[](DynamicBatcher* b)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(b->mu_) { return b->shutdown_ || !b->queue_.empty(); },
          this));
      if (queue_.empty()) return batch;  // shutting down
      // Wait until the batch is full or the oldest item is due.
      if (!options_.deterministic) {
        const absl::Time due = queue_.front().enqueued + options_.max_delay;
        auto full = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return shutdown_ || queued_rows_ >= options_.max_batch_rows;
        };
        while (!full() && !FrontCancelled() && absl::Now() < due) {
          mu_.AwaitWithDeadline(absl::Condition(
                                    +[](DynamicBatcher* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(b->mu_) {
                                      return b->shutdown_ ||
                                             b->queued_rows_ >= b->options_.max_batch_rows ||
                                             b->FrontCancelled();
                                    },
                                    this),
                                due);
        }
        if (FrontCancelled()) {
          // Hand back cancelled requests now; the rest wait for their turn.
          while (FrontCancelled()) {
            queued_rows_ -= queue_.front().rows;
            cancelled.push_back(std::move(queue_.front()));
            queue_.pop_front();
          }
          if (queue_rows_gauge_ != nullptr) {
            queue_rows_gauge_->Set(static_cast<double>(queued_rows_));
          }
          break;
        }
        if (queue_.empty()) continue;  // another worker took it
      }
      int64_t rows = 0;
      while (!queue_.empty()) {
        Item& front = queue_.front();
        const bool is_cancelled = front.work.cancelled != nullptr && front.work.cancelled->load();
        // Only inputs of one shape share a forward pass (token requests of
        // different lengths run apart).
        if (!is_cancelled && !batch.empty() &&
            (options_.deterministic || rows + front.rows > options_.max_batch_rows ||
             front.work.inputs.sizes().slice(1) != batch.front().work.inputs.sizes().slice(1))) {
          break;
        }
        queued_rows_ -= front.rows;
        if (is_cancelled) {
          cancelled.push_back(std::move(front));
        } else {
          rows += front.rows;
          batch.push_back(std::move(front));
        }
        queue_.pop_front();
      }
      in_flight_rows_ += rows;
      if (queue_rows_gauge_ != nullptr) queue_rows_gauge_->Set(static_cast<double>(queued_rows_));
      if (!batch.empty()) break;
      if (!cancelled.empty()) break;
    }
  }
  for (Item& item : cancelled) {
    item.work.done(absl::CancelledError("the request was cancelled before it ran"));
  }
  return batch;
}

void DynamicBatcher::WorkerLoop() {
  InheritIntraOpThreads();
  while (true) {
    std::vector<Item> batch = NextBatch();
    if (batch.empty()) {
      absl::MutexLock lock(&mu_);
      if (shutdown_ && queue_.empty()) return;
      continue;
    }
    Run(std::move(batch));
  }
}

void DynamicBatcher::Run(std::vector<Item> batch) {
  const absl::Time start = absl::Now();
  int64_t rows = 0;
  std::vector<std::string> layers;
  std::vector<torch::Tensor> inputs;
  for (const Item& item : batch) {
    rows += item.rows;
    inputs.push_back(item.work.inputs);
    for (const std::string& name : item.work.hidden_layers) {
      if (std::find(layers.begin(), layers.end(), name) == layers.end()) layers.push_back(name);
    }
    if (queue_seconds_ != nullptr)
      queue_seconds_->Observe(absl::ToDoubleSeconds(start - item.enqueued));
  }
  absl::StatusOr<TeacherOutput> out = [&]() -> absl::StatusOr<TeacherOutput> {
    absl::StatusOr<torch::Tensor> joined = TorchCall(
        "joining a batch", [&] { return inputs.size() == 1 ? inputs[0] : torch::cat(inputs, 0); });
    if (!joined.ok()) return joined.status();
    return teacher_->Forward(*joined, layers);
  }();
  const double forward_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (batches_ != nullptr) {
    batches_->Increment();
    batch_rows_->Observe(static_cast<double>(rows));
    batch_requests_->Observe(static_cast<double>(batch.size()));
    forward_seconds_->Observe(forward_seconds);
  }
  // Answers are split first and handed out after the rows leave the
  // in-flight count, so a caller holding its answer sees the batcher idle.
  std::vector<absl::StatusOr<Answer>> answers;
  answers.reserve(batch.size());
  int64_t offset = 0;
  for (Item& item : batch) {
    if (!out.ok()) {
      answers.push_back(out.status());
      continue;
    }
    answers.push_back(TorchCall("splitting a batch", [&] {
      torch::InferenceMode guard;
      Answer a;
      // One position per row (classifiers) or per (row, token) (language
      // models, whose logits are [rows, T, vocab]).
      const int64_t classes = out->logits.size(-1);
      a.log_probs =
          torch::log_softmax(out->logits.narrow(0, offset, item.rows) / item.work.temperature,
                             /*dim=*/-1)
              .reshape({-1, classes});
      const int64_t positions = a.log_probs.size(0);
      for (const std::string& name : item.work.hidden_layers) {
        const torch::Tensor h = out->hidden.at(name).narrow(0, offset, item.rows);
        a.hidden[name] = out->logits.dim() == 3 ? h.reshape({positions, -1}) : h;
      }
      return a;
    }));
    offset += item.rows;
  }
  {
    absl::MutexLock lock(&mu_);
    in_flight_rows_ -= rows;
  }
  for (size_t i = 0; i < batch.size(); ++i) batch[i].work.done(std::move(answers[i]));
}

}  // namespace retort::teacher
