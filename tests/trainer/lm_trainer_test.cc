// LmTrainer on synthetic token shards (no tokenizer needed, so it also runs
// in sanitizer builds): learning, distillation from an in-process Llama
// teacher, exact resume, and the teacher checks.
#include "trainer/lm/lm_trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "client/in_process_teacher_client.h"
#include "common/file_util.h"
#include "common/free_port.h"
#include "data/token_sequences.h"
#include "data/token_shard.h"
#include "distributed/c10d_communicator.h"
#include "models/checkpoint_file.h"
#include "models/llama_checkpoint.h"
#include "models/sliced_llama.h"
#include "student/slice.h"
#include "teacher/llama_teacher.h"
#include "tests/trainer/synthetic_data.h"

namespace retort::trainer {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr uint32_t kVocab = 40;

class LmTrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("retort_lm_trainer_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    train_ = Shard("train.tokens", 6000, 1);
    valid_ = Shard("valid.tokens", 1200, 2);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) { return (dir_ / name).string(); }

  std::shared_ptr<data::TokenSequenceDataset> Shard(const std::string& name, int n, uint32_t seed) {
    return testing::CountingTokens(Path(name), n, seed, kVocab);
  }

  LmTrainerOptions Options(const std::string& out) {
    LmTrainerOptions o;
    o.model.vocab_size = kVocab;
    o.model.hidden_size = 32;
    o.model.intermediate_size = 64;
    o.model.num_hidden_layers = 1;
    o.model.num_attention_heads = 2;
    o.model.num_key_value_heads = 2;
    o.model.max_position_embeddings = 16;
    o.optimizer.kind = "adamw";
    o.optimizer.learning_rate = 3e-3;
    o.steps = 60;
    o.batch_size = 8;
    o.seed = 4;
    o.log_every_steps = 1;
    o.out_dir = Path(out);
    return o;
  }

  // A 2-layer teacher trained briefly on the same data.
  std::shared_ptr<client::TeacherClient> Teacher(int64_t top_k) {
    if (teacher_model_ == nullptr) {
      LmTrainerOptions o = Options("teacher");
      o.model.hidden_size = 64;
      o.model.intermediate_size = 128;
      o.model.num_hidden_layers = 2;
      o.steps = 80;
      auto t = LmTrainer::Create(o, train_, valid_, nullptr);
      EXPECT_TRUE(t.ok()) << t.status();
      auto r = (*t)->Run();
      EXPECT_TRUE(r.ok()) << r.status();
      auto loaded = models::LoadLlamaCheckpoint(r->model_dir);
      EXPECT_TRUE(loaded.ok()) << loaded.status();
      teacher_model_ = *loaded;
    }
    return std::make_shared<client::InProcessTeacherClient>(
        teacher::LlamaTeacher::FromModel(teacher_model_, "tok-sha"),
        client::InProcessTeacherClient::Options{.top_k = top_k});
  }

  fs::path dir_;
  std::shared_ptr<data::TokenSequenceDataset> train_, valid_;
  std::shared_ptr<models::LlamaModel> teacher_model_;
};

TEST_F(LmTrainerTest, LearnsFromScratchAndExportsTheModel) {
  auto t = LmTrainer::Create(Options("scratch"), train_, valid_, nullptr);
  ASSERT_TRUE(t.ok()) << t.status();
  auto before = EvaluateLm((*t)->model(), *valid_, {});
  ASSERT_TRUE(before.ok());
  auto r = (*t)->Run();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->steps, 60);
  EXPECT_EQ(r->tokens, 60 * 8 * 16);
  // Random init is about uniform (perplexity ~40); the counting rule is
  // right 7 times in 8.
  EXPECT_GT(before->perplexity, 30);
  EXPECT_LT(r->final_validation.perplexity, 0.5 * before->perplexity);
  EXPECT_LT(r->final_validation.teacher_agreement, 0);  // no teacher
  auto exported = models::LoadLlamaCheckpoint(r->model_dir);
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_EQ(models::WeightsSha256(**exported), r->parameters_sha256);
  EXPECT_TRUE(PathExists(Path("scratch/result.json")));
}

TEST_F(LmTrainerTest, DistilledStudentAgreesWithItsTeacher) {
  for (int64_t k : {int64_t{0}, int64_t{4}}) {
    SCOPED_TRACE(k);
    LmTrainerOptions o = Options("distilled_" + std::to_string(k));
    o.loss.alpha = 1.0;  // soft targets only
    o.loss.temperature = 2.0;
    auto t = LmTrainer::Create(o, train_, valid_, Teacher(k));
    ASSERT_TRUE(t.ok()) << t.status();
    auto r = (*t)->Run();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_GT(r->final_validation.teacher_agreement, 0.6);
    EXPECT_LT(r->final_validation.perplexity, 20);
  }
}

TEST_F(LmTrainerTest, ResumesBitForBitWithATeacher) {
  LmTrainerOptions o = Options("whole");
  o.checkpoint_every_steps = 10;
  o.teacher_prefetch = 3;
  auto whole = LmTrainer::Create(o, train_, valid_, Teacher(8));
  ASSERT_TRUE(whole.ok()) << whole.status();
  auto expected = (*whole)->Run();
  ASSERT_TRUE(expected.ok()) << expected.status();

  LmTrainerOptions part = o;
  part.out_dir = Path("parts");
  part.stop_after_steps = 35;  // checkpoints at 30 and 35
  auto first = LmTrainer::Create(part, train_, valid_, Teacher(8));
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(absl::IsCancelled((*first)->Run().status()));

  part.stop_after_steps = 0;
  part.resume = true;
  auto second = LmTrainer::Create(part, train_, valid_, Teacher(8));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*second)->step(), 35);
  auto got = (*second)->Run();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->parameters_sha256, expected->parameters_sha256);
  EXPECT_EQ(got->resumed_from_step, 35);

  // Other settings, or no teacher, refuse to resume.
  LmTrainerOptions other = part;
  other.loss.alpha = 0.9;
  auto refused = LmTrainer::Create(other, train_, valid_, Teacher(8));
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("loss"));
  auto no_teacher = LmTrainer::Create(part, train_, valid_, nullptr);
  EXPECT_FALSE(no_teacher.ok());

  // Without resume or overwrite the checkpoints are not clobbered.
  part.resume = false;
  auto clobber = LmTrainer::Create(part, train_, valid_, Teacher(8));
  ASSERT_FALSE(clobber.ok());
  EXPECT_THAT(clobber.status().message(), HasSubstr("--resume=auto"));
}

// Recovery: a model SliceGPT cut to half its width trains on whole,
// distilled from the dense model it came from, and stays a sliced model.
TEST_F(LmTrainerTest, RecoversASlicedModelByDistillation) {
  LmTrainerOptions o = Options("dense");
  o.steps = 80;
  auto trained = LmTrainer::Create(o, train_, valid_, nullptr);
  ASSERT_TRUE(trained.ok()) << trained.status();
  auto dense_result = (*trained)->Run();
  ASSERT_TRUE(dense_result.ok()) << dense_result.status();
  auto dense = models::LoadLlamaCheckpoint(dense_result->model_dir);
  ASSERT_TRUE(dense.ok()) << dense.status();
  auto sliced = student::SliceLlama(
      **dense, *train_, {.fraction = 0.5, .multiple_of = 8, .calibration_sequences = 64});
  ASSERT_TRUE(sliced.ok()) << sliced.status();
  ASSERT_EQ((*sliced)->width(), 16);
  ASSERT_TRUE(models::SaveSlicedLlama(**sliced, Path("sliced")).ok());
  auto before = EvaluateLm(**sliced, *valid_, {});
  ASSERT_TRUE(before.ok()) << before.status();
  auto teacher = [&] {
    return std::make_shared<client::InProcessTeacherClient>(
        teacher::LlamaTeacher::FromModel(*dense, ""));
  };

  LmTrainerOptions r = Options("recover");
  r.model = (*sliced)->config();
  r.init_from = Path("sliced");
  r.steps = 40;
  r.loss.alpha = 0.5;
  r.checkpoint_every_steps = 10;
  auto recover = LmTrainer::Create(r, train_, valid_, teacher());
  ASSERT_TRUE(recover.ok()) << recover.status();
  auto recovered = (*recover)->Run();
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_LT(recovered->final_validation.perplexity, before->perplexity);
  // The result is a sliced checkpoint of the same width; shortcut matrices
  // were trained too.
  ASSERT_TRUE(models::IsSlicedLlamaCheckpoint(recovered->model_dir));
  auto reloaded = models::LoadCausalLm(recovered->model_dir);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(models::WeightsSha256(**reloaded), recovered->parameters_sha256);
  EXPECT_EQ((*reloaded)->ShapeJson()["width"], 16);

  // Stopped and resumed: the same parameters bit for bit.
  LmTrainerOptions part = r;
  part.out_dir = Path("recover_parts");
  part.stop_after_steps = 20;
  auto first = LmTrainer::Create(part, train_, valid_, teacher());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(absl::IsCancelled((*first)->Run().status()));
  part.stop_after_steps = 0;
  part.resume = true;
  auto second = LmTrainer::Create(part, train_, valid_, teacher());
  ASSERT_TRUE(second.ok()) << second.status();
  auto resumed = (*second)->Run();
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->parameters_sha256, recovered->parameters_sha256);

  // A sliced model trains whole, in its own shape.
  LmTrainerOptions layers = r;
  layers.out_dir = Path("layers");
  layers.init_layers = {0};
  auto refused = LmTrainer::Create(layers, train_, valid_, teacher());
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("trains whole"));
  LmTrainerOptions shape = r;
  shape.out_dir = Path("shape");
  shape.model.intermediate_size = 48;
  EXPECT_THAT(LmTrainer::Create(shape, train_, valid_, teacher()).status().message(),
              HasSubstr("sliced model"));
}

// A teacher answering for another vocabulary or tokenizer is refused.
TEST_F(LmTrainerTest, RefusesATeacherOfAnotherVocabularyOrTokenizer) {
  LmTrainerOptions o = Options("wrong");
  models::LlamaConfig bigger = o.model;
  bigger.vocab_size = kVocab + 10;
  auto other = std::make_shared<client::InProcessTeacherClient>(
      teacher::LlamaTeacher::FromModel(std::make_shared<models::LlamaModel>(bigger), ""),
      client::InProcessTeacherClient::Options{.top_k = 4});
  auto t = LmTrainer::Create(o, train_, valid_, other);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(t.status().message(), HasSubstr("vocabulary"));

  o.tokenizer_sha256 = "another-sha";
  t = LmTrainer::Create(o, train_, valid_, Teacher(4));
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("tokenizer"));

  o = Options("long");
  o.model.max_position_embeddings = 8;  // the data's sequences are 16
  EXPECT_FALSE(LmTrainer::Create(o, train_, valid_, nullptr).ok());
}

// The largest absolute difference between two models' parameters.
double MaxDifference(models::CausalLm& a, models::CausalLm& b) {
  auto pa = a.named_parameters();
  auto pb = b.named_parameters();
  EXPECT_EQ(pa.size(), pb.size());
  double worst = 0;
  for (const auto& item : pa) {
    worst = std::max(worst, (item.value() - pb[item.key()]).abs().max().item<double>());
  }
  return worst;
}

TEST_F(LmTrainerTest, AccumulationOverMicroBatchesMatchesTheWholeBatch) {
  std::shared_ptr<client::TeacherClient> teacher = Teacher(8);
  LmTrainerOptions o = Options("whole");
  o.steps = 12;
  o.log_every_steps = 0;
  auto whole = LmTrainer::Create(o, train_, valid_, teacher);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_TRUE((*whole)->Run().ok());
  LmTrainerOptions a = o;
  a.out_dir = Path("accumulated");
  a.accumulation_steps = 4;  // micro-batches of 2 sequences
  auto accumulated = LmTrainer::Create(a, train_, valid_, teacher);
  ASSERT_TRUE(accumulated.ok()) << accumulated.status();
  ASSERT_TRUE((*accumulated)->Run().ok());
  const double difference = MaxDifference((*whole)->model(), (*accumulated)->model());
  EXPECT_LT(difference, 1e-5);
  // Both runs did train: they moved away from the initial weights (the
  // task seeds the generator with the run's seed before building them).
  torch::manual_seed(o.seed);
  models::LlamaModel initial(o.model);
  EXPECT_GT(MaxDifference((*accumulated)->model(), initial), 1e-3);
}

// Two ranks (threads, c10d Gloo on loopback) with half the batch each train
// the same model as one rank with the whole batch.
TEST_F(LmTrainerTest, TwoRanksWithHalfBatchesMatchOneRankWithTheWholeBatch) {
  LmTrainerOptions o = Options("one");
  o.steps = 10;
  o.log_every_steps = 0;
  o.checkpoint_every_steps = 5;
  // The ranks are threads of this process sharing LibTorch's default
  // generator, so fresh weights would interleave their draws: every run
  // starts from the same saved weights instead (rank 0's are broadcast).
  {
    torch::manual_seed(7);
    models::LlamaModel initial(o.model);
    ASSERT_TRUE(initial.Save(Path("initial"), "").ok());
  }
  o.init_from = Path("initial");
  auto one = LmTrainer::Create(o, train_, valid_, Teacher(8));
  ASSERT_TRUE(one.ok()) << one.status();
  absl::StatusOr<LmTrainResult> alone = (*one)->Run();
  ASSERT_TRUE(alone.ok()) << alone.status();

  absl::StatusOr<int> free_port = FreeLoopbackPort();
  ASSERT_TRUE(free_port.ok()) << free_port.status();
  const int port = *free_port;
  std::unique_ptr<LmTrainer> ranks[2];
  absl::StatusOr<LmTrainResult> results[2];
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {
    // Each rank asks its own teacher, as each rank streams from the pool.
    std::shared_ptr<client::TeacherClient> teacher = Teacher(8);
    threads.emplace_back([&, rank, teacher] {
      distributed::C10dCommunicator::Options c;
      c.rendezvous.master_port = port;
      c.rendezvous.rank = rank;
      c.rendezvous.world_size = 2;
      c.timeout = absl::Seconds(60);
      absl::StatusOr<std::unique_ptr<distributed::C10dCommunicator>> communicator =
          distributed::C10dCommunicator::Create(c);
      ASSERT_TRUE(communicator.ok()) << communicator.status();
      LmTrainerOptions r = o;
      r.out_dir = Path("two");
      r.communicator = std::move(*communicator);
      auto t = LmTrainer::Create(r, train_, valid_, teacher);
      ASSERT_TRUE(t.ok()) << t.status();
      results[rank] = (*t)->Run();
      ranks[rank] = std::move(*t);
    });
  }
  for (auto& t : threads) t.join();
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_NE(ranks[rank], nullptr);
    ASSERT_TRUE(results[rank].ok()) << results[rank].status();
  }
  EXPECT_EQ(MaxDifference(ranks[0]->model(), ranks[1]->model()), 0.0);
  EXPECT_LT(MaxDifference(ranks[0]->model(), (*one)->model()), 1e-5);
  // Each rank evaluated half the validation set; the counts are summed.
  EXPECT_EQ(results[0]->final_validation.tokens, alone->final_validation.tokens);
  EXPECT_NEAR(results[0]->final_validation.loss, alone->final_validation.loss, 1e-4);
  EXPECT_TRUE(PathExists(Path("two/checkpoints/ckpt-000000000010/training-rank1.pt")));
  EXPECT_TRUE(PathExists(Path("two/model/config.json")));
}

// Asked to stop (what SIGTERM does through the CLI), the run finishes its
// step, checkpoints it and returns; --resume=auto then ends bit for bit where
// an undisturbed run does.
TEST_F(LmTrainerTest, StopsOnRequestWithACheckpointAndResumesBitForBit) {
  LmTrainerOptions o = Options("undisturbed");
  o.steps = 30;
  o.checkpoint_every_steps = 10;
  auto whole = LmTrainer::Create(o, train_, valid_, Teacher(8));
  ASSERT_TRUE(whole.ok());
  absl::StatusOr<LmTrainResult> reference = (*whole)->Run();
  ASSERT_TRUE(reference.ok()) << reference.status();

  LmTrainerOptions p = o;
  p.out_dir = Path("preempted");
  int polls = 0;
  p.stop_requested = [&polls] { return ++polls >= 13; };  // after step 13, mid-interval
  auto first = LmTrainer::Create(p, train_, valid_, Teacher(8));
  ASSERT_TRUE(first.ok());
  absl::StatusOr<LmTrainResult> stopped = (*first)->Run();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_TRUE(stopped->preempted);
  EXPECT_EQ(stopped->steps, 13);
  EXPECT_THAT(stopped->last_checkpoint, HasSubstr("ckpt-000000000013"));
  EXPECT_FALSE(PathExists(Path("preempted/model/config.json")));

  p.stop_requested = nullptr;
  p.resume = true;
  auto second = LmTrainer::Create(p, train_, valid_, Teacher(8));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*second)->step(), 13);
  absl::StatusOr<LmTrainResult> resumed = (*second)->Run();
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_FALSE(resumed->preempted);
  EXPECT_EQ(resumed->parameters_sha256, reference->parameters_sha256);
}

}  // namespace
}  // namespace retort::trainer
