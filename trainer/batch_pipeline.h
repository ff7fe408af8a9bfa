// BatchPipeline: draws the training batches of the steps ahead and sends them
// to the teacher before the training loop gets there, so teacher latency
// hides behind student compute.
//
// Batches come out in step order whatever order the teacher answers in. A
// batch's rows come from the pipeline's own copy of the loop's sampler and
// its contents from the task's Prepare, which depends only on (rows, step):
// the depth of the pipeline and any resume point leave the course of
// training as it is.
//
// Not thread-safe: the training thread owns it.
#ifndef RETORT_TRAINER_BATCH_PIPELINE_H_
#define RETORT_TRAINER_BATCH_PIPELINE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "data/sampler.h"
#include "trainer/task.h"

namespace retort::trainer {

class BatchPipeline {
 public:
  struct Options {
    int64_t depth = 4;  // steps prepared ahead of the current one
    bool ask_teacher = false;
    // Teacher hidden layers to ask for with each batch (feature matching).
    std::vector<std::string> hidden_layers;
  };

  struct Prepared {
    int64_t step = 0;
    std::vector<int64_t> indices;
    std::unique_ptr<TaskBatch> batch;
  };

  // Starts at `first_step`, where `sampler` stands; stops preparing at
  // `end_step`. `task` must outlive the pipeline.
  BatchPipeline(Options options, Task& task, data::ShuffleSampler sampler, int64_t first_step,
                int64_t end_step);

  // The next step's batch (refilling the pipeline behind it). Call at most
  // end_step - first_step times.
  Prepared Next();

 private:
  // Prepares steps until `want` are ahead (or the end is reached).
  void Fill(size_t want);

  const Options options_;
  Task& task_;
  data::ShuffleSampler sampler_;  // at step next_step_
  int64_t next_step_;
  const int64_t end_step_;
  std::deque<Prepared> ahead_;
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_BATCH_PIPELINE_H_
