#include "trainer/batch_pipeline.h"

#include <algorithm>
#include <utility>

namespace retort::trainer {

BatchPipeline::BatchPipeline(Options options, Task& task, data::ShuffleSampler sampler,
                             int64_t first_step, int64_t end_step)
    : options_(std::move(options)),
      task_(task),
      sampler_(std::move(sampler)),
      next_step_(first_step),
      end_step_(end_step) {}

void BatchPipeline::Fill(size_t want) {
  while (ahead_.size() < want && next_step_ < end_step_) {
    Prepared p;
    p.step = next_step_++;
    p.indices = sampler_.Next();
    p.batch = task_.Prepare(p.indices, p.step, options_.ask_teacher, options_.hidden_layers);
    ahead_.push_back(std::move(p));
  }
}

BatchPipeline::Prepared BatchPipeline::Next() {
  Fill(1);
  Prepared front = std::move(ahead_.front());
  ahead_.pop_front();
  // The requests for the `depth` steps after this one go out before it trains.
  Fill(static_cast<size_t>(std::max<int64_t>(options_.depth, 0)));
  return front;
}

}  // namespace retort::trainer
