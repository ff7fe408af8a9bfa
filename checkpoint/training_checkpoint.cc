#include "checkpoint/training_checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>

#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "models/checkpoint_file.h"

namespace retort::checkpoint {
namespace {

constexpr char kOptimizerKey[] = "optimizer";
constexpr char kRngKey[] = "rng_state";
constexpr char kAdaptersKey[] = "adapters";
constexpr char kAdapterOptimizerKey[] = "adapter_optimizer";
constexpr char kTaskTensorsKey[] = "task_tensors";

at::Generator DefaultGenerator() { return at::detail::getDefaultCPUGenerator(); }

nlohmann::json TrainingMeta(const TrainingState& state) {
  return {{"training",
           {{"step", state.step},
            {"sampler", state.sampler.ToJson()},
            {"best_validation_accuracy", state.best_validation_accuracy},
            {"best_epoch", state.best_epoch},
            {"train_seconds", state.train_seconds},
            {"teacher_weights_sha256", state.teacher_weights_sha256},
            {"last_validation", state.last_validation},
            {"epoch_sums",
             {state.epoch_loss_sum, state.epoch_soft_sum, state.epoch_hard_sum, state.epoch_steps,
              state.epoch_feature_sum}}}},
          {"config", state.config}};
}

models::ArchiveWriter TrainingWriter(torch::optim::Optimizer& optimizer,
                                     const AdapterState& adapters,
                                     const std::map<std::string, torch::Tensor>& task_tensors) {
  return [&optimizer, adapters, &task_tensors](torch::serialize::OutputArchive& archive) {
    if (!task_tensors.empty()) {
      torch::serialize::OutputArchive task_archive;
      for (const auto& [name, tensor] : task_tensors) task_archive.write(name, tensor);
      archive.write(kTaskTensorsKey, task_archive);
    }
    torch::serialize::OutputArchive optimizer_archive;
    optimizer.save(optimizer_archive);
    archive.write(kOptimizerKey, optimizer_archive);
    if (adapters.module != nullptr) {
      torch::serialize::OutputArchive module_archive, adapter_optimizer_archive;
      adapters.module->save(module_archive);
      archive.write(kAdaptersKey, module_archive);
      adapters.optimizer->save(adapter_optimizer_archive);
      archive.write(kAdapterOptimizerKey, adapter_optimizer_archive);
    }
    at::Generator generator = DefaultGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    archive.write(kRngKey, generator.get_state());
  };
}

models::ArchiveReader TrainingReader(const std::string& path, torch::optim::Optimizer& optimizer,
                                     bool restore_rng, const AdapterState& adapters,
                                     std::map<std::string, torch::Tensor>* task_tensors) {
  return [&path, &optimizer, restore_rng, adapters,
          task_tensors](torch::serialize::InputArchive& archive) {
    absl::Status read_task = TorchCall("", [&] {
      torch::serialize::InputArchive task_archive;
      if (!archive.try_read(kTaskTensorsKey, task_archive)) return;
      for (const std::string& name : task_archive.keys()) {
        torch::Tensor tensor;
        task_archive.read(name, tensor);
        (*task_tensors)[name] = tensor;
      }
    });
    if (!read_task.ok()) {
      return absl::DataLossError(
          absl::StrCat(path, ": unreadable task state: ", read_task.message()));
    }
    if (adapters.module != nullptr) {
      absl::Status status = TorchCall("", [&] {
        torch::serialize::InputArchive module_archive, adapter_optimizer_archive;
        archive.read(kAdaptersKey, module_archive);
        adapters.module->load(module_archive);
        archive.read(kAdapterOptimizerKey, adapter_optimizer_archive);
        adapters.optimizer->load(adapter_optimizer_archive);
      });
      if (!status.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            path, " holds no feature adapters that fit this run (was it written without ",
            "--feature_weight, or with another --match or --adapter?): ", status.message()));
      }
    }
    absl::Status status = TorchCall("", [&] {
      torch::serialize::InputArchive optimizer_archive;
      archive.read(kOptimizerKey, optimizer_archive);
      optimizer.load(optimizer_archive);
      if (restore_rng) {
        torch::Tensor rng;
        archive.read(kRngKey, rng);
        at::Generator generator = DefaultGenerator();
        std::lock_guard<std::mutex> lock(generator.mutex());
        generator.set_state(rng);
      }
    });
    if (!status.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(path,
                       " cannot resume training (was it written with another --optimizer, or "
                       "is it a final export?): ",
                       status.message()));
    }
    return absl::OkStatus();
  };
}

absl::StatusOr<TrainingState> ParseTrainingMeta(const std::string& path,
                                                const nlohmann::json& meta) {
  if (!meta.contains("training") || !meta["training"].is_object()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " holds no training state and cannot be resumed"));
  }
  const nlohmann::json& t = meta["training"];
  TrainingState state;
  try {
    state.step = t.at("step").get<int64_t>();
    RETORT_ASSIGN_OR_RETURN(state.sampler, data::SamplerState::FromJson(t.at("sampler")));
    state.best_validation_accuracy = t.at("best_validation_accuracy").get<double>();
    state.best_epoch = t.at("best_epoch").get<int64_t>();
    state.train_seconds = t.at("train_seconds").get<double>();
    state.teacher_weights_sha256 = t.at("teacher_weights_sha256").get<std::string>();
    state.last_validation = t.value("last_validation", nlohmann::json());
    state.config = meta.value("config", nlohmann::json());
    if (t.contains("epoch_sums")) {
      const nlohmann::json& sums = t.at("epoch_sums");
      state.epoch_loss_sum = sums.at(0).get<double>();
      state.epoch_soft_sum = sums.at(1).get<double>();
      state.epoch_hard_sum = sums.at(2).get<double>();
      state.epoch_steps = sums.at(3).get<int64_t>();
      if (sums.size() > 4) state.epoch_feature_sum = sums.at(4).get<double>();
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": malformed training state: ", e.what()));
  }
  return state;
}

}  // namespace

std::vector<std::string> ConfigDifferences(const nlohmann::json& stored,
                                           const nlohmann::json& now) {
  std::vector<std::string> keys;
  for (auto it = now.begin(); it != now.end(); ++it) {
    if (!stored.contains(it.key()) || stored[it.key()] != it.value()) keys.push_back(it.key());
  }
  // Settings recorded only when on (so that runs from before them resume):
  // turning one off is a difference too.
  for (const char* key : {"features", "feature_pairs"}) {
    if (stored.is_object() && stored.contains(key) && !now.contains(key)) keys.push_back(key);
  }
  return keys;
}

absl::Status CheckResumable(const std::string& path, const TrainingState& loaded,
                            const nlohmann::json& config,
                            const std::string& teacher_weights_sha256) {
  const std::vector<std::string> differing = ConfigDifferences(loaded.config, config);
  if (!differing.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot resume ", path, ": this run's settings differ from the checkpoint's in: ",
        absl::StrJoin(differing, ", "), "; resume with the original flags or use --overwrite"));
  }
  if (loaded.teacher_weights_sha256 != teacher_weights_sha256) {
    auto name = [](const std::string& sha) { return sha.empty() ? "(none)" : sha.substr(0, 12); };
    return absl::FailedPreconditionError(
        absl::StrCat("cannot resume ", path, ": it was distilled from teacher weights ",
                     name(loaded.teacher_weights_sha256), " but this run's teacher is ",
                     name(teacher_weights_sha256)));
  }
  return absl::OkStatus();
}

absl::Status SaveTrainingCheckpoint(const std::string& path, torch::nn::Module& model,
                                    const nlohmann::json& model_json,
                                    torch::optim::Optimizer& optimizer, const TrainingState& state,
                                    const AdapterState& adapters) {
  return models::WriteModuleCheckpoint(path, model, model_json, TrainingMeta(state),
                                       TrainingWriter(optimizer, adapters, state.task_tensors));
}

absl::StatusOr<TrainingState> LoadTrainingCheckpoint(
    const std::string& path, torch::nn::Module& model, const nlohmann::json& model_json,
    torch::optim::Optimizer& optimizer, bool restore_rng, const AdapterState& adapters) {
  std::map<std::string, torch::Tensor> task_tensors;
  RETORT_ASSIGN_OR_RETURN(nlohmann::json meta, models::ReadModuleCheckpointInto(
                                                   path, model, model_json,
                                                   TrainingReader(path, optimizer, restore_rng,
                                                                  adapters, &task_tensors)));
  RETORT_ASSIGN_OR_RETURN(TrainingState state, ParseTrainingMeta(path, meta));
  state.task_tensors = std::move(task_tensors);
  return state;
}

}  // namespace retort::checkpoint
