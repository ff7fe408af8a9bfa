// On-policy distillation: the losses against closed forms and finite
// differences, rollout layout, and runs on the one training loop that mix
// on- and off-policy steps, move the student toward its teacher and resume
// bit for bit.
#include "trainer/lm/on_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "client/in_process_teacher_client.h"
#include "data/token_sequences.h"
#include "data/token_shard.h"
#include "models/llama.h"
#include "models/llama_checkpoint.h"
#include "teacher/llama_teacher.h"
#include "tests/trainer/synthetic_data.h"
#include "trainer/lm/lm_trainer.h"

namespace retort::trainer {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int64_t kIgnore = -100;

// Query ids [N, 1 + V] naming the sampled token and then every class, and
// the teacher's log-probabilities there.
struct Scored {
  torch::Tensor ids, log_probs;
};
Scored ScoreAll(const torch::Tensor& labels, const torch::Tensor& teacher_lp) {
  const int64_t n = teacher_lp.size(0), v = teacher_lp.size(1);
  const torch::Tensor sampled = labels.clamp_min(0).unsqueeze(1);
  const torch::Tensor all = torch::arange(v, torch::kInt64).unsqueeze(0).expand({n, v});
  Scored s;
  s.ids = torch::cat({sampled, all}, 1);
  s.log_probs = teacher_lp.gather(1, s.ids);
  return s;
}

TEST(OnPolicyLossTest, SampledReverseKlGradientIsTheScoreFunctionTimesTheGap) {
  torch::manual_seed(1);
  const double t = 2.0;
  const torch::Tensor logits = torch::randn({4, 6}, torch::kFloat32).requires_grad_(true);
  const torch::Tensor teacher = torch::log_softmax(torch::randn({4, 6}) / t, 1);
  const torch::Tensor labels = torch::tensor(std::vector<int64_t>{3, kIgnore, 0, 5});
  const Scored s = ScoreAll(labels, teacher);
  LmLossOptions o;
  o.temperature = t;
  LmLossTerms terms = OnPolicyDistillationLoss(logits, labels, s.ids, s.log_probs, nullptr,
                                               OnPolicyLoss::kReverseKlSampled, o);
  terms.total.backward();
  EXPECT_EQ(terms.tokens, 3);
  // d/dz of T^2 * mean_t (log q(y) - log p(y)) * log q(y), the gap held:
  // T^2 * gap * (onehot(y) - q) / T / tokens.
  const torch::Tensor q = torch::softmax(logits.detach() / t, 1);
  const torch::Tensor log_q = torch::log_softmax(logits.detach() / t, 1);
  torch::Tensor expected = torch::zeros({4, 6});
  double soft = 0;
  for (int64_t i : {0, 2, 3}) {
    const int64_t y = labels[i].item<int64_t>();
    const double gap = (log_q[i][y] - teacher[i][y]).item<double>();
    soft += gap / 3;
    torch::Tensor onehot = torch::zeros({6});
    onehot[y] = 1;
    expected[i] = t * t * gap * (onehot - q[i]) / t / 3;
  }
  EXPECT_LT((logits.grad() - expected).abs().max().item<double>(), 1e-5);
  EXPECT_NEAR(terms.soft.item<double>(), soft, 1e-5);
}

TEST(OnPolicyLossTest, SampledReverseKlIsUnbiasedForTheReverseKlGradient) {
  // Many rows of one position, each with its own sample from q: the mean
  // surrogate gradient approaches the exact gradient of KL(q || p).
  torch::manual_seed(2);
  const int64_t rows = 40000, v = 4;
  const torch::Tensor z = torch::tensor({0.5, -0.3, 1.2, 0.1}, torch::kFloat32);
  const torch::Tensor p = torch::log_softmax(torch::tensor({1.0, 0.2, -0.5, 0.7}), 0);
  const torch::Tensor samples = torch::multinomial(torch::softmax(z, 0), rows, true);
  const torch::Tensor logits = z.unsqueeze(0).expand({rows, v}).clone().requires_grad_(true);
  const Scored s = ScoreAll(samples, p.unsqueeze(0).expand({rows, v}));
  LmLossTerms terms = OnPolicyDistillationLoss(logits, samples, s.ids, s.log_probs, nullptr,
                                               OnPolicyLoss::kReverseKlSampled, LmLossOptions());
  terms.total.backward();
  const torch::Tensor estimate = logits.grad().sum(0);

  const torch::Tensor z64 = z.to(torch::kFloat64).requires_grad_(true);
  const torch::Tensor log_q = torch::log_softmax(z64, 0);
  (log_q.exp() * (log_q - p.to(torch::kFloat64))).sum().backward();
  EXPECT_LT((estimate.to(torch::kFloat64) - z64.grad()).abs().max().item<double>(), 0.01)
      << estimate << z64.grad();
  // The soft term estimates the divergence itself.
  const double kl = (log_q.exp() * (log_q - p.to(torch::kFloat64))).sum().item<double>();
  EXPECT_NEAR(terms.soft.item<double>(), kl, 0.01);
}

TEST(OnPolicyLossTest, CandidateFormsEqualTheDenseDivergencesWhenCandidatesCoverTheVocabulary) {
  torch::manual_seed(3);
  const double t = 1.5, beta = 0.3;
  const torch::Tensor logits = torch::randn({5, 7}, torch::kFloat64);
  const torch::Tensor teacher = torch::log_softmax(torch::randn({5, 7}, torch::kFloat64), 1);
  const torch::Tensor labels = torch::tensor(std::vector<int64_t>{1, 2, kIgnore, 4, 6});
  const Scored s = ScoreAll(labels, teacher);
  LmLossOptions o;
  o.temperature = t;
  o.js_beta = beta;
  const torch::Tensor keep = labels != kIgnore;
  const torch::Tensor log_q = torch::log_softmax(logits / t, 1);
  const torch::Tensor q = log_q.exp(), pt = teacher.exp();
  const torch::Tensor rkl = (q * (log_q - teacher)).sum(1).masked_select(keep).mean();
  const torch::Tensor m = beta * pt + (1 - beta) * q;
  const torch::Tensor jsd = (beta * pt * (teacher - m.log()) + (1 - beta) * q * (log_q - m.log()))
                                .sum(1)
                                .masked_select(keep)
                                .mean();
  for (auto [kind, expected] :
       {std::pair{OnPolicyLoss::kReverseKl, rkl}, std::pair{OnPolicyLoss::kJensenShannon, jsd}}) {
    LmLossTerms terms =
        OnPolicyDistillationLoss(logits, labels, s.ids, s.log_probs, nullptr, kind, o);
    EXPECT_NEAR(terms.soft.item<double>(), expected.item<double>(), 1e-9) << OnPolicyLossName(kind);
    EXPECT_NEAR(terms.total.item<double>(), t * t * expected.item<double>(), 2e-9);
  }
}

TEST(OnPolicyLossTest, CandidateBucketsJoinTheTeachersTopK) {
  // Two student candidates and the teacher's top 5 of 7 ids: the teacher's
  // likely ids get buckets of their own even where the student misses them,
  // and when the two lists cover the vocabulary the loss is the dense one.
  torch::manual_seed(5);
  const double t = 1.0;
  const torch::Tensor logits = torch::randn({6, 7}, torch::kFloat64);
  const torch::Tensor teacher = torch::log_softmax(torch::randn({6, 7}, torch::kFloat64) * 2, 1);
  const torch::Tensor labels = torch::tensor(std::vector<int64_t>{1, 2, kIgnore, 4, 6, 0});
  const torch::Tensor student_order = std::get<1>(logits.sort(1, /*descending=*/true));
  const torch::Tensor teacher_order = std::get<1>(teacher.sort(1, /*descending=*/true));
  teacher::TopKLogProbs top;
  top.indices = teacher_order.narrow(1, 0, 5);
  top.values = teacher.gather(1, top.indices);
  top.tail_log_mass = (1 - top.values.exp().sum(1)).log();
  // The student's candidates: its top 2 (overlapping the teacher's list in
  // some rows), so the union may or may not cover all 7 ids.
  const torch::Tensor candidates = student_order.narrow(1, 0, 2);
  const torch::Tensor ids = torch::cat({labels.clamp_min(0).unsqueeze(1), candidates}, 1);
  const torch::Tensor query_lp = teacher.gather(1, ids);
  LmLossOptions o;
  o.temperature = t;
  // The reference: the same divergence on the buckets {union ids} + tail,
  // built by hand per row.
  const torch::Tensor log_q = torch::log_softmax(logits / t, 1);
  double want = 0;
  int64_t rows = 0;
  for (int64_t i = 0; i < 6; ++i) {
    if (labels[i].item<int64_t>() == kIgnore) continue;
    std::vector<bool> in(7, false);
    for (int64_t j = 0; j < 5; ++j) in[top.indices[i][j].item<int64_t>()] = true;
    for (int64_t j = 0; j < 2; ++j) in[candidates[i][j].item<int64_t>()] = true;
    double p_tail = 0, q_tail = 0, row = 0;
    for (int64_t v = 0; v < 7; ++v) {
      const double lp = teacher[i][v].item<double>(), lq = log_q[i][v].item<double>();
      if (in[v]) {
        row += std::exp(lq) * (lq - lp);
      } else {
        p_tail += std::exp(lp);
        q_tail += std::exp(lq);
      }
    }
    if (q_tail > 0) row += q_tail * (std::log(q_tail) - std::log(std::max(p_tail, 1e-300)));
    want += row;
    ++rows;
  }
  want /= rows;
  const LmLossTerms terms =
      OnPolicyDistillationLoss(logits, labels, ids, query_lp, &top, OnPolicyLoss::kReverseKl, o);
  EXPECT_NEAR(terms.soft.item<double>(), want, 1e-9);
}

TEST(OnPolicyLossTest, CandidateFormsMatchCentralFiniteDifferences) {
  torch::manual_seed(4);
  const torch::Tensor base = torch::randn({3, 9}, torch::kFloat64);
  const torch::Tensor teacher = torch::log_softmax(torch::randn({3, 9}, torch::kFloat64), 1);
  const torch::Tensor labels = torch::tensor({2, 8, 0}, torch::kInt64);
  // Four candidates each (the student's top 4), so there is a tail bucket.
  const torch::Tensor candidates = std::get<1>(base.topk(4, 1));
  const torch::Tensor ids = torch::cat({labels.unsqueeze(1), candidates}, 1);
  const torch::Tensor teacher_lp = teacher.gather(1, ids);
  LmLossOptions o;
  o.temperature = 1.3;
  o.js_beta = 0.7;
  for (OnPolicyLoss kind : {OnPolicyLoss::kReverseKl, OnPolicyLoss::kJensenShannon}) {
    auto loss = [&](const torch::Tensor& z) {
      return OnPolicyDistillationLoss(z, labels, ids, teacher_lp, nullptr, kind, o).total;
    };
    const torch::Tensor z = base.clone().requires_grad_(true);
    loss(z).backward();
    const double h = 1e-6;
    for (int64_t i = 0; i < 3; ++i) {
      for (int64_t j = 0; j < 9; ++j) {
        torch::Tensor up = base.clone(), down = base.clone();
        up[i][j] += h;
        down[i][j] -= h;
        const double fd = (loss(up).item<double>() - loss(down).item<double>()) / (2 * h);
        EXPECT_NEAR(z.grad()[i][j].item<double>(), fd, 1e-6) << OnPolicyLossName(kind);
      }
    }
  }
}

TEST(OnPolicyTest, RolloutsLayOutPromptsSamplesAndCandidates) {
  torch::manual_seed(5);
  models::LlamaConfig c;
  c.vocab_size = 30;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 24;
  models::LlamaModel model(c);
  OnPolicyOptions o;
  o.fraction = 1;
  o.rollout_tokens = 5;
  o.candidates = 3;
  const std::vector<std::vector<int64_t>> prompts = {{1, 2, 3, 4}, {7, 8}};
  absl::StatusOr<Rollout> r = MakeRollout(model, prompts, o, kIgnore, /*seed=*/9);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->generated, 10);
  EXPECT_EQ(r->inputs.sizes(), (std::vector<int64_t>{2, 8}));
  // Row 1: prompt 7 8, then its 5 samples; labels only where a sample is
  // predicted (positions 1..5), padding after.
  const auto lab = r->labels.accessor<int64_t, 2>();
  const auto in = r->inputs.accessor<int64_t, 2>();
  EXPECT_EQ(in[1][0], 7);
  EXPECT_EQ(in[1][1], 8);
  EXPECT_EQ(lab[1][0], kIgnore);
  for (int t = 1; t <= 5; ++t) EXPECT_NE(lab[1][t], kIgnore) << t;
  for (int t = 6; t < 8; ++t) EXPECT_EQ(lab[1][t], kIgnore) << t;
  for (int t = 1; t < 5; ++t) EXPECT_EQ(in[1][t + 1], lab[1][t]);  // inputs continue with samples
  for (int t = 0; t < 3; ++t) EXPECT_EQ(lab[0][t], kIgnore);
  EXPECT_TRUE(r->query_ids.select(2, 0).equal(r->labels.clamp_min(0)));
  torch::NoGradGuard no_grad;
  model.eval();
  EXPECT_TRUE(
      r->query_ids.narrow(2, 1, 3).equal(std::get<1>(model.forward(r->inputs).topk(3, -1))));
  // Reproducible from the seed.
  absl::StatusOr<Rollout> again = MakeRollout(model, prompts, o, kIgnore, 9);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->inputs.equal(r->inputs));
}

TEST(OnPolicyTest, StepsAreChosenFromTheSeedAndOptionsAreChecked) {
  OnPolicyOptions o;
  o.fraction = 0.5;
  o.rollout_tokens = 4;
  int on = 0;
  for (int64_t step = 0; step < 1000; ++step) on += IsOnPolicyStep(o, 7, step);
  EXPECT_GT(on, 430);
  EXPECT_LT(on, 570);
  EXPECT_EQ(IsOnPolicyStep(o, 7, 12), IsOnPolicyStep(o, 7, 12));
  EXPECT_NE(RolloutSeed(7, 1), RolloutSeed(7, 2));
  EXPECT_TRUE(o.Validate(30, 24, 16).ok());
  o.max_staleness = 2;
  EXPECT_THAT(o.Validate(30, 24, 16).message(), HasSubstr("--max_staleness=2"));
  o.max_staleness = 0;
  o.prompt_tokens = 20;
  EXPECT_THAT(o.Validate(30, 24, 16).message(), HasSubstr("--prompt_tokens is 20"));
  o.prompt_tokens = 16;
  o.rollout_tokens = 9;
  EXPECT_THAT(o.Validate(30, 24, 16).message(), HasSubstr("exceed the model's 24 positions"));
  o.rollout_tokens = 4;
  o.candidates = 0;
  EXPECT_THAT(o.Validate(30, 24, 16).message(), HasSubstr("--on_policy_candidates"));
  o.candidates = 31;  // more than the vocabulary: all of it
  EXPECT_TRUE(o.Validate(30, 24, 16).ok());
  EXPECT_THAT(ParseOnPolicyLoss("kl").status().message(), HasSubstr("rkl_sampled, rkl, fkl, jsd"));
}

// Runs on the training loop, with synthetic counting data as in
// lm_trainer_test.
class OnPolicyRunTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kVocab = 40;
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("retort_on_policy_" + std::to_string(::getpid()) + "_" +
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
    o.model.max_position_embeddings = 24;
    o.optimizer.kind = "adamw";
    o.optimizer.learning_rate = 1e-2;
    o.steps = 60;
    o.batch_size = 8;
    o.seed = 4;
    o.log_every_steps = 0;
    o.out_dir = Path(out);
    o.loss.alpha = 1.0;
    o.on_policy.fraction = 1;
    o.on_policy.prompt_tokens = 4;
    o.on_policy.rollout_tokens = 12;
    o.on_policy.candidates = 8;
    return o;
  }

  std::shared_ptr<client::TeacherClient> Teacher() {
    if (teacher_model_ == nullptr) {
      LmTrainerOptions o = Options("teacher");
      o.on_policy.fraction = 0;
      o.loss.alpha = 0;
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
        client::InProcessTeacherClient::Options{.top_k = 8});
  }

  // The teacher's mean negative log-likelihood of the student's samples.
  double TeacherNll(models::CausalLm& student) {
    OnPolicyOptions o = Options("").on_policy;
    std::vector<std::vector<int64_t>> prompts;
    const torch::Tensor inputs = valid_->GetBatch({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}).inputs;
    for (int64_t i = 0; i < inputs.size(0); ++i) {
      prompts.emplace_back(inputs[i].data_ptr<int64_t>(), inputs[i].data_ptr<int64_t>() + 4);
    }
    absl::StatusOr<Rollout> r = MakeRollout(student, prompts, o, kIgnore, 123);
    EXPECT_TRUE(r.ok()) << r.status();
    absl::StatusOr<client::TeacherClient::Targets> scored =
        Teacher()
            ->SubmitTargets({.inputs = r->inputs,
                             .temperature = 1.0,
                             .hidden_layers = {},
                             .query_ids = r->query_ids})
            .get();
    EXPECT_TRUE(scored.ok()) << scored.status();
    const torch::Tensor keep = r->labels.reshape({-1}) != kIgnore;
    return -scored->query_log_probs.select(1, 0).masked_select(keep).mean().item<double>();
  }

  fs::path dir_;
  std::shared_ptr<data::TokenSequenceDataset> train_, valid_;
  std::shared_ptr<models::LlamaModel> teacher_model_;
};

TEST_F(OnPolicyRunTest, EveryLossMovesTheStudentsSamplesTowardWhatTheTeacherExpects) {
  for (const char* name : {"rkl_sampled", "rkl", "jsd", "fkl"}) {
    SCOPED_TRACE(name);
    LmTrainerOptions o = Options(std::string("run_") + name);
    o.on_policy.loss = *ParseOnPolicyLoss(name);
    // The sampled estimator is unbiased but noisy: from a near-uniform
    // student it needs more steps and moves less per step than the forms
    // that sum over the candidates.
    const bool sampled = std::string(name) == "rkl_sampled";
    if (sampled) o.steps = 200;
    auto t = LmTrainer::Create(o, train_, valid_, Teacher());
    ASSERT_TRUE(t.ok()) << t.status();
    const double before = TeacherNll((*t)->model());
    auto r = (*t)->Run();
    ASSERT_TRUE(r.ok()) << r.status();
    const double after = TeacherNll((*t)->model());
    EXPECT_LT(after, (sampled ? 0.95 : 0.8) * before) << before << " -> " << after;
  }
}

TEST_F(OnPolicyRunTest, MixedRunsResumeBitForBit) {
  LmTrainerOptions o = Options("whole");
  o.on_policy.fraction = 0.5;
  o.steps = 20;
  o.checkpoint_every_steps = 5;
  o.teacher_prefetch = 3;
  int on = 0;
  for (int64_t s = 0; s < 20; ++s) on += IsOnPolicyStep(o.on_policy, o.seed, s);
  ASSERT_GT(on, 2);
  ASSERT_LT(on, 18);
  auto whole = LmTrainer::Create(o, train_, valid_, Teacher());
  ASSERT_TRUE(whole.ok()) << whole.status();
  auto expected = (*whole)->Run();
  ASSERT_TRUE(expected.ok()) << expected.status();

  LmTrainerOptions part = o;
  part.out_dir = Path("parts");
  part.stop_after_steps = 12;
  auto first = LmTrainer::Create(part, train_, valid_, Teacher());
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(absl::IsCancelled((*first)->Run().status()));
  part.stop_after_steps = 0;
  part.resume = true;
  auto second = LmTrainer::Create(part, train_, valid_, Teacher());
  ASSERT_TRUE(second.ok()) << second.status();
  auto got = (*second)->Run();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->parameters_sha256, expected->parameters_sha256);
  // Another on-policy setting refuses to resume.
  LmTrainerOptions other = part;
  other.on_policy.rollout_tokens = 6;
  auto refused = LmTrainer::Create(other, train_, valid_, Teacher());
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("on_policy"));
}

TEST_F(OnPolicyRunTest, RolloutsGeneratedAheadResumeBitForBit) {
  // --max_staleness=1: each on-policy step's rollout comes from the previous
  // step's weights, generated on another thread while that step trains. A
  // run stopped right before an on-policy step keeps that step's rollout in
  // its checkpoint, so the resume trains on the same one.
  LmTrainerOptions o = Options("ahead");
  o.on_policy.fraction = 0.5;
  o.on_policy.max_staleness = 1;
  o.steps = 20;
  o.checkpoint_every_steps = 5;
  o.teacher_prefetch = 2;
  int64_t stop = 0;
  for (int64_t s = 8; s < 18 && stop == 0; ++s) {
    if (IsOnPolicyStep(o.on_policy, o.seed, s) && IsOnPolicyStep(o.on_policy, o.seed, s - 1)) {
      stop = s;
    }
  }
  ASSERT_GT(stop, 0) << "no two on-policy steps in a row to stop between";
  auto whole = LmTrainer::Create(o, train_, valid_, Teacher());
  ASSERT_TRUE(whole.ok()) << whole.status();
  auto expected = (*whole)->Run();
  ASSERT_TRUE(expected.ok()) << expected.status();

  // Strictly on-policy rollouts give another run: the lag is real.
  LmTrainerOptions strict = o;
  strict.out_dir = Path("strict");
  strict.on_policy.max_staleness = 0;
  auto fresh = LmTrainer::Create(strict, train_, valid_, Teacher());
  ASSERT_TRUE(fresh.ok());
  auto fresh_result = (*fresh)->Run();
  ASSERT_TRUE(fresh_result.ok());
  EXPECT_NE(fresh_result->parameters_sha256, expected->parameters_sha256);

  LmTrainerOptions part = o;
  part.out_dir = Path("ahead_parts");
  part.stop_after_steps = stop;
  auto first = LmTrainer::Create(part, train_, valid_, Teacher());
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(absl::IsCancelled((*first)->Run().status()));
  part.stop_after_steps = 0;
  part.resume = true;
  auto second = LmTrainer::Create(part, train_, valid_, Teacher());
  ASSERT_TRUE(second.ok()) << second.status();
  auto got = (*second)->Run();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->parameters_sha256, expected->parameters_sha256) << "stopped before step " << stop;

  LmTrainerOptions unprepared = o;
  unprepared.teacher_prefetch = 0;
  auto refused = LmTrainer::Create(unprepared, train_, valid_, Teacher());
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("--teacher_prefetch"));
}

TEST_F(OnPolicyRunTest, NeedsATeacher) {
  auto t = LmTrainer::Create(Options("none"), train_, valid_, nullptr);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("needs a teacher"));
}

}  // namespace
}  // namespace retort::trainer
