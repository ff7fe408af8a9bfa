// BatchPipeline: prepares the training batches of the steps ahead and asks
// the teacher for them before the trainer gets there, so teacher latency
// hides behind student compute.
//
// Batches come out in data order whatever order the teacher answers in. A
// batch's contents depend only on (seed, step): indices from a copy of the
// trainer's sampler, and jitter drawn from a generator seeded by the step
// (not from LibTorch's default generator, which dropout uses), so the depth
// of the pipeline and any resume point leave the course of training as it
// is.
//
// Not thread-safe: the training thread owns it.
#ifndef RETORT_TRAINER_BATCH_PIPELINE_H_
#define RETORT_TRAINER_BATCH_PIPELINE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "data/dataset.h"
#include "data/sampler.h"
#include "trainer/teacher_client.h"

namespace retort::trainer {

// The generator that jitters step `step`'s batch.
at::Generator JitterGenerator(uint64_t seed, int64_t step);

class BatchPipeline {
 public:
  struct Options {
    int64_t depth = 4;  // teacher requests in flight ahead of the current step
    int64_t jitter_pixels = 0;
    uint64_t seed = 1;
    double temperature = 1;
    bool ask_teacher = false;
    // Teacher hidden layers to ask for with each batch (feature matching).
    std::vector<std::string> hidden_layers;
  };

  struct Prepared {
    int64_t step = 0;
    std::vector<int64_t> indices;
    torch::Tensor inputs;  // jittered
    torch::Tensor labels;
    TeacherClient::TargetsFuture teacher;  // valid when ask_teacher
  };

  // Starts at `first_step`, where `sampler` stands; stops preparing at
  // `end_step`. `teacher` may be null when !ask_teacher.
  BatchPipeline(Options options, std::shared_ptr<const data::Dataset> dataset,
                std::shared_ptr<TeacherClient> teacher, data::ShuffleSampler sampler,
                int64_t first_step, int64_t end_step);

  // The next step's batch (refilling the pipeline behind it). Call at most
  // end_step - first_step times.
  Prepared Next();

 private:
  // Prepares steps until `want` are ahead (or the end is reached).
  void Fill(size_t want);

  const Options options_;
  std::shared_ptr<const data::Dataset> dataset_;
  std::shared_ptr<TeacherClient> teacher_;
  data::ShuffleSampler sampler_;  // at step next_step_
  int64_t next_step_;
  const int64_t end_step_;
  std::deque<Prepared> ahead_;
};

}  // namespace retort::trainer

#endif  // RETORT_TRAINER_BATCH_PIPELINE_H_
