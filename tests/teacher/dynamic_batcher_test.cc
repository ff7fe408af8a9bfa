#include "teacher/dynamic_batcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/synchronization/notification.h"
#include "models/classifier.h"
#include "teacher/native_teacher.h"

namespace retort::teacher {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// Generous bounds on waits that normally end in microseconds; they only
// matter when the batcher is broken, and turn a hang into a failure.
constexpr absl::Duration kWait = absl::Seconds(20);

// Logits are a fixed affine map of float32 inputs [B, 4] to 3 classes.
class LinearTeacher : public Teacher {
 public:
  LinearTeacher()
      : weights_(torch::tensor(
            {{1.0f, -2.0f, 0.5f}, {0.0f, 3.0f, -1.0f}, {2.0f, 1.0f, 1.5f}, {-0.5f, 0.25f, 4.0f}})),
        bias_(torch::tensor({0.1f, -0.2f, 0.3f})) {
    fingerprint_.set_architecture("linear 4->3");
    fingerprint_.add_input_shape(4);
    fingerprint_.set_input_dtype(v1::DTYPE_FLOAT32);
    fingerprint_.set_num_classes(3);
  }

  torch::Tensor Logits(const torch::Tensor& x) const { return x.matmul(weights_) + bias_; }

  const v1::TeacherFingerprint& fingerprint() const override { return fingerprint_; }
  int64_t max_batch() const override { return 1024; }
  absl::StatusOr<TeacherOutput> Forward(const torch::Tensor& inputs,
                                        const std::vector<std::string>& hidden_layers) override {
    return TeacherOutput{Logits(inputs), {}};
  }

 private:
  const torch::Tensor weights_;
  const torch::Tensor bias_;
  v1::TeacherFingerprint fingerprint_;
};

// Wraps a teacher: records each Forward call's rows and hidden layers, can
// hold the first call until Release() so tests queue work behind it, and can
// fail calls.
class GatedTeacher : public Teacher {
 public:
  GatedTeacher(std::shared_ptr<Teacher> inner, bool hold_first)
      : inner_(std::move(inner)), hold_first_(hold_first) {}

  const v1::TeacherFingerprint& fingerprint() const override { return inner_->fingerprint(); }
  int64_t max_batch() const override { return inner_->max_batch(); }

  absl::StatusOr<TeacherOutput> Forward(const torch::Tensor& inputs,
                                        const std::vector<std::string>& hidden_layers) override {
    bool first;
    {
      absl::MutexLock lock(&mu_);
      rows_.push_back(inputs.size(0));
      layers_.push_back(hidden_layers);
      first = rows_.size() == 1;
    }
    if (first && hold_first_) {
      held_.Notify();
      released_.WaitForNotificationWithTimeout(kWait);
    }
    absl::Status failure;
    {
      absl::MutexLock lock(&mu_);
      failure = failure_;
    }
    if (!failure.ok()) return failure;
    return inner_->Forward(inputs, hidden_layers);
  }

  // True once the first call is held inside Forward.
  bool WaitUntilHeld() { return held_.WaitForNotificationWithTimeout(kWait); }
  void Release() {
    if (!released_.HasBeenNotified()) released_.Notify();
  }
  void FailWith(absl::Status status) {
    absl::MutexLock lock(&mu_);
    failure_ = std::move(status);
  }
  std::vector<int64_t> batch_rows() const {
    absl::MutexLock lock(&mu_);
    return rows_;
  }
  std::vector<std::vector<std::string>> batch_layers() const {
    absl::MutexLock lock(&mu_);
    return layers_;
  }

 private:
  const std::shared_ptr<Teacher> inner_;
  const bool hold_first_;
  absl::Notification held_;
  absl::Notification released_;
  mutable absl::Mutex mu_;
  std::vector<int64_t> rows_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<std::string>> layers_ ABSL_GUARDED_BY(mu_);
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
};

// Where one work item's callback leaves its result.
struct Outcome {
  absl::Notification done;  // notifying twice aborts: done runs at most once
  absl::StatusOr<Answer> answer = absl::UnknownError("never answered");

  bool Wait() { return done.WaitForNotificationWithTimeout(kWait); }
};

DynamicBatcher::Work MakeWork(const torch::Tensor& inputs, double temperature,
                              std::shared_ptr<Outcome> outcome,
                              std::vector<std::string> hidden_layers = {},
                              std::shared_ptr<std::atomic<bool>> cancelled = nullptr) {
  DynamicBatcher::Work work;
  work.inputs = inputs;
  work.temperature = temperature;
  work.hidden_layers = std::move(hidden_layers);
  work.cancelled = std::move(cancelled);
  work.done = [outcome](absl::StatusOr<Answer> answer) {
    outcome->answer = std::move(answer);
    outcome->done.Notify();
  };
  return work;
}

DynamicBatcher::Options ImmediateOptions() {
  DynamicBatcher::Options options;
  options.max_batch_rows = 6;
  options.max_delay = absl::ZeroDuration();
  return options;
}

// Submits one row and waits until the gate holds it inside Forward, so later
// submissions queue behind it.
std::shared_ptr<Outcome> HoldTheWorker(DynamicBatcher& batcher, GatedTeacher& gate,
                                       const torch::Tensor& row) {
  auto outcome = std::make_shared<Outcome>();
  EXPECT_TRUE(batcher.Submit(MakeWork(row, 1.0, outcome)).ok());
  EXPECT_TRUE(gate.WaitUntilHeld()) << "the worker never ran the first item";
  return outcome;
}

TEST(DynamicBatcherTest, CreateRefusesBadOptions) {
  auto teacher = std::make_shared<LinearTeacher>();
  EXPECT_EQ(DynamicBatcher::Create({}, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  DynamicBatcher::Options zero_rows;
  zero_rows.max_batch_rows = 0;
  EXPECT_THAT(DynamicBatcher::Create(zero_rows, teacher).status().message(),
              HasSubstr("max_batch_rows=0"));
  DynamicBatcher::Options no_workers;
  no_workers.workers = 0;
  EXPECT_THAT(DynamicBatcher::Create(no_workers, teacher).status().message(),
              HasSubstr("workers=0"));
}

TEST(DynamicBatcherTest, MergesQueuedItemsUpToMaxBatchRowsAtTheirOwnTemperatures) {
  torch::manual_seed(1);
  auto linear = std::make_shared<LinearTeacher>();
  auto gate = std::make_shared<GatedTeacher>(linear, /*hold_first=*/true);
  MetricsRegistry metrics;
  DynamicBatcher::Options options = ImmediateOptions();
  options.metrics = &metrics;
  auto batcher = DynamicBatcher::Create(options, gate);
  ASSERT_TRUE(batcher.ok()) << batcher.status();
  absl::Cleanup release = [&] { gate->Release(); };

  auto first = HoldTheWorker(**batcher, *gate, torch::randn({1, 4}));
  struct Item {
    torch::Tensor x;
    double temperature;
    std::shared_ptr<Outcome> outcome = std::make_shared<Outcome>();
  };
  std::vector<Item> items = {
      {torch::randn({3, 4}), 2.0}, {torch::randn({1, 4}), 0.5}, {torch::randn({4, 4}), 1.0}};
  for (Item& item : items) {
    ASSERT_TRUE((*batcher)->Submit(MakeWork(item.x, item.temperature, item.outcome)).ok());
  }
  EXPECT_EQ((*batcher)->queued_rows(), 8);
  EXPECT_EQ((*batcher)->in_flight_rows(), 1);
  gate->Release();

  ASSERT_TRUE(first->Wait());
  EXPECT_TRUE(first->answer.ok()) << first->answer.status();
  for (Item& item : items) {
    ASSERT_TRUE(item.outcome->Wait());
    ASSERT_TRUE(item.outcome->answer.ok()) << item.outcome->answer.status();
    const Answer& answer = *item.outcome->answer;
    torch::Tensor expected = torch::log_softmax(linear->Logits(item.x) / item.temperature, 1);
    ASSERT_EQ(answer.log_probs.sizes(), expected.sizes());
    EXPECT_TRUE(torch::allclose(answer.log_probs, expected, 1e-6, 1e-6))
        << "T=" << item.temperature << "\n"
        << answer.log_probs << "\n"
        << expected;
    EXPECT_THAT(answer.hidden, IsEmpty());
  }
  // The first item alone, then 3 + 1 rows (the next 4 would pass 6), then 4.
  EXPECT_THAT(gate->batch_rows(), ElementsAre(1, 4, 4));
  EXPECT_EQ((*batcher)->queued_rows(), 0);
  EXPECT_EQ((*batcher)->in_flight_rows(), 0);
  EXPECT_EQ(metrics.GetCounter("retort_teacher_batches_total", "")->value(), 3);
}

TEST(DynamicBatcherTest, RunsAsSoonAsAFullBatchIsWaiting) {
  auto linear = std::make_shared<LinearTeacher>();
  auto gate = std::make_shared<GatedTeacher>(linear, /*hold_first=*/false);
  DynamicBatcher::Options options;
  options.max_batch_rows = 4;
  options.max_delay = absl::Hours(1);  // only a full batch can start it
  auto batcher = DynamicBatcher::Create(options, gate);
  ASSERT_TRUE(batcher.ok()) << batcher.status();
  auto a = std::make_shared<Outcome>(), b = std::make_shared<Outcome>();
  ASSERT_TRUE((*batcher)->Submit(MakeWork(torch::randn({2, 4}), 1.0, a)).ok());
  ASSERT_TRUE((*batcher)->Submit(MakeWork(torch::randn({2, 4}), 1.0, b)).ok());
  ASSERT_TRUE(a->Wait());
  ASSERT_TRUE(b->Wait());
  EXPECT_TRUE(a->answer.ok() && b->answer.ok());
  EXPECT_THAT(gate->batch_rows(), ElementsAre(4));
}

TEST(DynamicBatcherTest, DeterministicModeRunsEachItemAlone) {
  torch::manual_seed(2);
  auto linear = std::make_shared<LinearTeacher>();
  auto gate = std::make_shared<GatedTeacher>(linear, /*hold_first=*/true);
  DynamicBatcher::Options options = ImmediateOptions();
  options.deterministic = true;
  auto batcher = DynamicBatcher::Create(options, gate);
  ASSERT_TRUE(batcher.ok()) << batcher.status();
  absl::Cleanup release = [&] { gate->Release(); };

  auto first = HoldTheWorker(**batcher, *gate, torch::randn({1, 4}));
  std::vector<torch::Tensor> inputs = {torch::randn({3, 4}), torch::randn({1, 4}),
                                       torch::randn({2, 4})};
  std::vector<std::shared_ptr<Outcome>> outcomes;
  for (const torch::Tensor& x : inputs) {
    outcomes.push_back(std::make_shared<Outcome>());
    ASSERT_TRUE((*batcher)->Submit(MakeWork(x, 3.0, outcomes.back())).ok());
  }
  gate->Release();
  for (size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_TRUE(outcomes[i]->Wait());
    ASSERT_TRUE(outcomes[i]->answer.ok()) << outcomes[i]->answer.status();
    EXPECT_TRUE(torch::allclose(outcomes[i]->answer->log_probs,
                                torch::log_softmax(linear->Logits(inputs[i]) / 3.0, 1), 1e-6,
                                1e-6));
  }
  ASSERT_TRUE(first->Wait());
  EXPECT_THAT(gate->batch_rows(), ElementsAre(1, 3, 1, 2));
}

TEST(DynamicBatcherTest, RefusesWorkBeyondMaxQueueRows) {
  auto gate = std::make_shared<GatedTeacher>(std::make_shared<LinearTeacher>(), true);
  DynamicBatcher::Options options = ImmediateOptions();
  options.max_queue_rows = 5;
  auto batcher = DynamicBatcher::Create(options, gate);
  ASSERT_TRUE(batcher.ok()) << batcher.status();
  absl::Cleanup release = [&] { gate->Release(); };

  auto first = HoldTheWorker(**batcher, *gate, torch::randn({1, 4}));
  auto fits = std::make_shared<Outcome>(), refused = std::make_shared<Outcome>(),
       fills = std::make_shared<Outcome>();
  ASSERT_TRUE((*batcher)->Submit(MakeWork(torch::randn({3, 4}), 1.0, fits)).ok());
  absl::Status status = (*batcher)->Submit(MakeWork(torch::randn({3, 4}), 1.0, refused));
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(status.message(), HasSubstr("limit of 5"));
  // Exactly up to the limit is fine.
  ASSERT_TRUE((*batcher)->Submit(MakeWork(torch::randn({2, 4}), 1.0, fills)).ok());
  EXPECT_EQ((*batcher)->queued_rows(), 5);
  gate->Release();
  ASSERT_TRUE(fits->Wait());
  ASSERT_TRUE(fills->Wait());
  EXPECT_TRUE(fits->answer.ok() && fills->answer.ok());
  (*batcher)->Shutdown();
  EXPECT_FALSE(refused->done.HasBeenNotified()) << "a refused item's callback ran";
}

TEST(DynamicBatcherTest, CancelledItemsNeverRun) {
  auto gate = std::make_shared<GatedTeacher>(std::make_shared<LinearTeacher>(), true);
  auto batcher = DynamicBatcher::Create(ImmediateOptions(), gate);
  ASSERT_TRUE(batcher.ok()) << batcher.status();
  absl::Cleanup release = [&] { gate->Release(); };

  auto first = HoldTheWorker(**batcher, *gate, torch::randn({1, 4}));
  auto flag = std::make_shared<std::atomic<bool>>(false);
  auto cancelled = std::make_shared<Outcome>(), kept = std::make_shared<Outcome>();
  ASSERT_TRUE((*batcher)->Submit(MakeWork(torch::randn({2, 4}), 1.0, cancelled, {}, flag)).ok());
  ASSERT_TRUE((*batcher)->Submit(MakeWork(torch::randn({3, 4}), 1.0, kept)).ok());
  flag->store(true);
  gate->Release();
  ASSERT_TRUE(cancelled->Wait());
  EXPECT_EQ(cancelled->answer.status().code(), absl::StatusCode::kCancelled)
      << cancelled->answer.status();
  ASSERT_TRUE(kept->Wait());
  EXPECT_TRUE(kept->answer.ok()) << kept->answer.status();

  // An item cancelled before it is queued, with nothing else waiting.
  auto alone = std::make_shared<Outcome>();
  ASSERT_TRUE((*batcher)
                  ->Submit(MakeWork(torch::randn({2, 4}), 1.0, alone, {},
                                    std::make_shared<std::atomic<bool>>(true)))
                  .ok());
  ASSERT_TRUE(alone->Wait());
  EXPECT_EQ(alone->answer.status().code(), absl::StatusCode::kCancelled);
  // Only the held item and the kept one ever reached the teacher.
  EXPECT_THAT(gate->batch_rows(), ElementsAre(1, 3));
}

TEST(DynamicBatcherTest, ShutdownFailsQueuedWorkAndRefusesMore) {
  auto gate = std::make_shared<GatedTeacher>(std::make_shared<LinearTeacher>(), true);
  auto batcher = DynamicBatcher::Create(ImmediateOptions(), gate);
  ASSERT_TRUE(batcher.ok()) << batcher.status();
  absl::Cleanup release = [&] { gate->Release(); };

  auto first = HoldTheWorker(**batcher, *gate, torch::randn({1, 4}));
  auto a = std::make_shared<Outcome>(), b = std::make_shared<Outcome>();
  ASSERT_TRUE((*batcher)->Submit(MakeWork(torch::randn({2, 4}), 1.0, a)).ok());
  ASSERT_TRUE((*batcher)->Submit(MakeWork(torch::randn({2, 4}), 1.0, b)).ok());
  (*batcher)->Shutdown();
  // Queued work fails at once, in Shutdown's caller.
  ASSERT_TRUE(a->done.HasBeenNotified());
  ASSERT_TRUE(b->done.HasBeenNotified());
  EXPECT_EQ(a->answer.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(b->answer.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*batcher)->queued_rows(), 0);
  auto late = std::make_shared<Outcome>();
  absl::Status status = (*batcher)->Submit(MakeWork(torch::randn({1, 4}), 1.0, late));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  (*batcher)->Shutdown();  // idempotent
  // The pass already running finishes.
  gate->Release();
  ASSERT_TRUE(first->Wait());
  EXPECT_TRUE(first->answer.ok()) << first->answer.status();
  batcher->reset();
  EXPECT_FALSE(late->done.HasBeenNotified());
  EXPECT_THAT(gate->batch_rows(), ElementsAre(1));
}

TEST(DynamicBatcherTest, WakeHandsBackCancelledWorkWithoutWaitingForTheDelay) {
  auto gate = std::make_shared<GatedTeacher>(std::make_shared<LinearTeacher>(), false);
  DynamicBatcher::Options options;
  options.max_delay = absl::Hours(1);
  auto batcher = DynamicBatcher::Create(options, gate);
  ASSERT_TRUE(batcher.ok()) << batcher.status();
  auto flag = std::make_shared<std::atomic<bool>>(false);
  auto cancelled = std::make_shared<Outcome>();
  ASSERT_TRUE((*batcher)->Submit(MakeWork(torch::randn({2, 4}), 1.0, cancelled, {}, flag)).ok());
  flag->store(true);
  (*batcher)->Wake();
  // Without Wake the worker would sleep until the hour passed.
  ASSERT_TRUE(cancelled->Wait());
  EXPECT_EQ(cancelled->answer.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ((*batcher)->queued_rows(), 0);
  (*batcher)->Shutdown();
  EXPECT_THAT(gate->batch_rows(), IsEmpty());
}

TEST(DynamicBatcherTest, ShutdownFailsWorkWaitingForItsDelay) {
  auto gate = std::make_shared<GatedTeacher>(std::make_shared<LinearTeacher>(), false);
  DynamicBatcher::Options options;
  options.max_delay = absl::Hours(1);
  auto batcher = DynamicBatcher::Create(options, gate);
  ASSERT_TRUE(batcher.ok()) << batcher.status();
  auto waiting = std::make_shared<Outcome>();
  ASSERT_TRUE((*batcher)->Submit(MakeWork(torch::randn({2, 4}), 1.0, waiting)).ok());
  (*batcher)->Shutdown();
  ASSERT_TRUE(waiting->Wait());
  EXPECT_EQ(waiting->answer.status().code(), absl::StatusCode::kUnavailable);
  batcher->reset();
  EXPECT_THAT(gate->batch_rows(), IsEmpty());
}

TEST(DynamicBatcherTest, ATeacherErrorReachesEveryItemOfTheBatch) {
  auto gate = std::make_shared<GatedTeacher>(std::make_shared<LinearTeacher>(), true);
  DynamicBatcher::Options options = ImmediateOptions();
  options.max_batch_rows = 16;
  auto batcher = DynamicBatcher::Create(options, gate);
  ASSERT_TRUE(batcher.ok()) << batcher.status();
  absl::Cleanup release = [&] { gate->Release(); };

  auto first = HoldTheWorker(**batcher, *gate, torch::randn({1, 4}));
  std::vector<std::shared_ptr<Outcome>> outcomes;
  for (int64_t rows : {2, 1, 3}) {
    outcomes.push_back(std::make_shared<Outcome>());
    ASSERT_TRUE((*batcher)->Submit(MakeWork(torch::randn({rows, 4}), 1.0, outcomes.back())).ok());
  }
  gate->FailWith(absl::InternalError("the teacher exploded"));
  gate->Release();
  outcomes.push_back(first);
  for (const auto& outcome : outcomes) {
    ASSERT_TRUE(outcome->Wait());
    EXPECT_EQ(outcome->answer.status().code(), absl::StatusCode::kInternal);
    EXPECT_EQ(outcome->answer.status().message(), "the teacher exploded");
  }
  EXPECT_THAT(gate->batch_rows(), ElementsAre(1, 6));
}

TEST(DynamicBatcherTest, HiddenLayersGoOnlyToTheItemsThatAskedForThem) {
  torch::manual_seed(3);
  models::ModelSpec spec;
  spec.hidden = {16, 8};
  auto model = *models::CreateClassifier(spec, 4);
  std::shared_ptr<Teacher> native = NativeTeacher::FromModel(model);
  auto gate = std::make_shared<GatedTeacher>(native, /*hold_first=*/true);
  DynamicBatcher::Options options = ImmediateOptions();
  options.max_batch_rows = 64;
  auto batcher = DynamicBatcher::Create(options, gate);
  ASSERT_TRUE(batcher.ok()) << batcher.status();
  absl::Cleanup release = [&] { gate->Release(); };

  auto first = HoldTheWorker(**batcher, *gate, torch::randn({1, 1, 28, 28}));
  struct Item {
    torch::Tensor x;
    std::vector<std::string> layers;
    std::shared_ptr<Outcome> outcome = std::make_shared<Outcome>();
  };
  std::vector<Item> items = {{torch::randn({2, 1, 28, 28}), {"fc1"}},
                             {torch::randn({3, 1, 28, 28}), {}},
                             {torch::randn({1, 1, 28, 28}), {"fc0", "fc1"}}};
  for (Item& item : items) {
    ASSERT_TRUE((*batcher)->Submit(MakeWork(item.x, 2.0, item.outcome, item.layers)).ok());
  }
  gate->Release();
  ASSERT_TRUE(first->Wait());
  for (Item& item : items) {
    ASSERT_TRUE(item.outcome->Wait());
    ASSERT_TRUE(item.outcome->answer.ok()) << item.outcome->answer.status();
  }
  EXPECT_THAT(gate->batch_rows(), ElementsAre(1, 6));
  EXPECT_THAT(gate->batch_layers()[1], UnorderedElementsAre("fc0", "fc1"));

  torch::NoGradGuard no_grad;
  for (Item& item : items) {
    SCOPED_TRACE(::testing::Message() << item.layers.size() << " layers");
    const Answer& answer = *item.outcome->answer;
    models::HiddenStates expected_hidden;
    torch::Tensor logits = model->ForwardWithHidden(item.x, {"fc0", "fc1"}, &expected_hidden);
    EXPECT_TRUE(torch::allclose(answer.log_probs, torch::log_softmax(logits / 2.0, 1), 1e-5, 1e-5));
    std::vector<std::string> got;
    for (const auto& [name, h] : answer.hidden) got.push_back(name);
    EXPECT_EQ(got, item.layers);
    for (const std::string& name : item.layers) {
      const torch::Tensor& h = answer.hidden.at(name);
      ASSERT_EQ(h.sizes(), expected_hidden.at(name).sizes()) << name;
      EXPECT_TRUE(torch::allclose(h, expected_hidden.at(name), 1e-5, 1e-5)) << name;
    }
  }
}

TEST(DynamicBatcherTest, BatchedCnnResultsEqualUnbatchedOnes) {
  torch::manual_seed(5);
  models::ModelSpec spec;
  spec.architecture = models::Architecture::kCnn;
  spec.hidden = {4, 8, 16};
  std::shared_ptr<NativeTeacher> native =
      NativeTeacher::FromModel(*models::CreateClassifier(spec, 6));
  auto gate = std::make_shared<GatedTeacher>(native, /*hold_first=*/true);
  DynamicBatcher::Options options = ImmediateOptions();
  options.max_batch_rows = 64;
  auto batcher = DynamicBatcher::Create(options, gate);
  ASSERT_TRUE(batcher.ok()) << batcher.status();
  absl::Cleanup release = [&] { gate->Release(); };

  auto first = HoldTheWorker(**batcher, *gate, torch::randn({1, 1, 28, 28}));
  std::vector<torch::Tensor> inputs = {torch::randn({3, 1, 28, 28}), torch::randn({5, 1, 28, 28}),
                                       torch::randn({1, 1, 28, 28})};
  std::vector<double> temperatures = {2.0, 1.0, 8.0};
  std::vector<std::shared_ptr<Outcome>> outcomes;
  for (size_t i = 0; i < inputs.size(); ++i) {
    outcomes.push_back(std::make_shared<Outcome>());
    ASSERT_TRUE((*batcher)->Submit(MakeWork(inputs[i], temperatures[i], outcomes.back())).ok());
  }
  gate->Release();
  ASSERT_TRUE(first->Wait());
  for (size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_TRUE(outcomes[i]->Wait());
    ASSERT_TRUE(outcomes[i]->answer.ok()) << outcomes[i]->answer.status();
    absl::StatusOr<torch::Tensor> alone = native->LogProbs(inputs[i], temperatures[i]);
    ASSERT_TRUE(alone.ok()) << alone.status();
    EXPECT_TRUE(torch::allclose(outcomes[i]->answer->log_probs, *alone, 1e-5, 1e-5))
        << "item " << i;
  }
  EXPECT_THAT(gate->batch_rows(), ElementsAre(1, 9));
}

}  // namespace
}  // namespace retort::teacher
