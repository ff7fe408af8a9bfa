#include "trainer/batch_pipeline.h"

#include <ATen/CPUGeneratorImpl.h>

#include <utility>

#include "data/augment.h"

namespace retort::trainer {

at::Generator JitterGenerator(uint64_t seed, int64_t step) {
  // SplitMix64 of (seed, step): neighbouring steps get unrelated streams.
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return at::make_generator<at::CPUGeneratorImpl>(z);
}

BatchPipeline::BatchPipeline(Options options, std::shared_ptr<const data::Dataset> dataset,
                             std::shared_ptr<TeacherClient> teacher, data::ShuffleSampler sampler,
                             int64_t first_step, int64_t end_step)
    : options_(options),
      dataset_(std::move(dataset)),
      teacher_(std::move(teacher)),
      sampler_(std::move(sampler)),
      next_step_(first_step),
      end_step_(end_step) {}

void BatchPipeline::Fill(size_t want) {
  while (ahead_.size() < want && next_step_ < end_step_) {
    Prepared p;
    p.step = next_step_++;
    p.indices = sampler_.Next();
    data::Batch batch = dataset_->GetBatch(p.indices);
    p.inputs = options_.jitter_pixels > 0
                   ? data::JitterImages(batch.inputs, options_.jitter_pixels,
                                        JitterGenerator(options_.seed, p.step))
                   : batch.inputs;
    p.labels = batch.labels;
    if (options_.ask_teacher) {
      p.teacher = teacher_->SubmitTargets(p.inputs, options_.temperature, options_.hidden_layers);
    }
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
