// Incremental decoding with a key/value cache, and generation on top of it.
#include "models/generation.h"

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "models/kv_cache.h"
#include "models/llama.h"
#include "models/sliced_llama.h"

namespace retort::models {
namespace {

using ::testing::HasSubstr;

LlamaConfig Base() {
  LlamaConfig c;
  c.vocab_size = 97;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 48;
  return c;
}

// Every family's attention variant: grouped-query Llama, Qwen2's q/k/v
// biases, Qwen3's per-head q/k norms, Mistral's sliding window (shorter than
// the sequences below, so it masks).
std::vector<std::pair<std::string, LlamaConfig>> Families() {
  std::vector<std::pair<std::string, LlamaConfig>> out;
  out.push_back({"llama", Base()});
  LlamaConfig qwen2 = Base();
  qwen2.model_type = "qwen2";
  qwen2.qkv_bias = true;
  out.push_back({"qwen2", qwen2});
  LlamaConfig qwen3 = Base();
  qwen3.model_type = "qwen3";
  qwen3.qk_norm = true;
  out.push_back({"qwen3", qwen3});
  LlamaConfig mistral = Base();
  mistral.model_type = "mistral";
  mistral.sliding_window = 5;
  out.push_back({"mistral", mistral});
  return out;
}

// Random weights everywhere (biases and norm scales included, so that none
// of them is an identity that would hide a mistake).
void Randomize(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : model.parameters()) p.normal_(0.0, 0.1).add_(p.dim() == 1 ? 1.0 : 0.0);
}

torch::Tensor Row(const std::vector<int64_t>& ids) {
  return torch::tensor(ids, torch::kInt64).unsqueeze(0);
}

std::vector<int64_t> RandomIds(int64_t n, int64_t vocab) {
  const torch::Tensor t = torch::randint(vocab, {n}, torch::kInt64);
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n);
}

// Feeds `ids` as a prompt of `prefill` tokens and then one token at a time;
// every step's logits must equal the full forward pass's at that position.
void ExpectCachedEqualsFull(CausalLm& model, const std::vector<int64_t>& ids, int64_t prefill,
                            const std::string& what) {
  torch::InferenceMode guard;
  model.eval();
  const torch::Tensor full = model.forward(Row(ids))[0];
  KvCache cache(model.config().num_hidden_layers);
  const torch::Tensor first = model.Decode(Row({ids.begin(), ids.begin() + prefill}),
                                           torch::ones({1, prefill}, torch::kBool), &cache);
  EXPECT_LT((first[0] - full.narrow(0, 0, prefill)).abs().max().item<double>(), 1e-5) << what;
  for (size_t t = prefill; t < ids.size(); ++t) {
    const torch::Tensor step =
        model.Decode(Row({ids[t]}), torch::ones({1, 1}, torch::kBool), &cache);
    EXPECT_LT((step[0][0] - full[t]).abs().max().item<double>(), 1e-5)
        << what << " at position " << t;
  }
  EXPECT_EQ(cache.lengths()[0].item<int64_t>(), static_cast<int64_t>(ids.size()));
}

TEST(KvCacheTest, CachedDecodingEqualsTheFullForwardPassInEveryFamily) {
  for (const auto& [name, config] : Families()) {
    torch::manual_seed(11);
    LlamaModel model(config);
    Randomize(model);
    const std::vector<int64_t> ids = RandomIds(20, config.vocab_size);
    ExpectCachedEqualsFull(model, ids, /*prefill=*/1, name + " from one token");
    ExpectCachedEqualsFull(model, ids, /*prefill=*/7, name + " after a prefill of 7");
  }
}

TEST(KvCacheTest, SlicedModelsDecodeLikeTheirFullForwardPass) {
  for (bool tied : {false, true}) {
    LlamaConfig config = Base();
    config.tie_word_embeddings = tied;
    torch::manual_seed(5);
    SlicedLlamaModel model(config, /*width=*/48);
    Randomize(model);
    ExpectCachedEqualsFull(model, RandomIds(16, config.vocab_size), 4,
                           tied ? "sliced, tied" : "sliced, untied");
  }
}

TEST(KvCacheTest, LeftPaddedRowsComputeWhatTheyComputeAlone) {
  for (const auto& [name, config] : Families()) {
    torch::manual_seed(3);
    LlamaModel model(config);
    Randomize(model);
    model.eval();
    torch::InferenceMode guard;
    const std::vector<int64_t> a = RandomIds(9, config.vocab_size),
                               b = RandomIds(4, config.vocab_size);
    // b padded on the left with junk ids that must not matter.
    torch::Tensor tokens =
        torch::stack({Row(a)[0], torch::cat({torch::full({5}, 13, torch::kInt64), Row(b)[0]})});
    torch::Tensor valid = torch::ones({2, 9}, torch::kBool);
    valid[1].narrow(0, 0, 5).fill_(false);
    KvCache cache(config.num_hidden_layers);
    torch::Tensor logits = model.Decode(tokens, valid, &cache);
    EXPECT_LT((logits[0] - model.forward(Row(a))[0]).abs().max().item<double>(), 1e-5) << name;
    EXPECT_LT((logits[1].narrow(0, 5, 4) - model.forward(Row(b))[0]).abs().max().item<double>(),
              1e-5)
        << name;
    // Then three steps, row 1 skipping the second (a masked token).
    std::vector<int64_t> ra = a, rb = b;
    for (int step = 0; step < 3; ++step) {
      const int64_t ta = 20 + step, tb = 40 + step;
      const bool b_real = step != 1;
      torch::Tensor v = torch::tensor({true, b_real}).view({2, 1});
      logits = model.Decode(torch::tensor({ta, tb}, torch::kInt64).view({2, 1}), v, &cache);
      ra.push_back(ta);
      EXPECT_LT((logits[0][0] - model.forward(Row(ra))[0][-1]).abs().max().item<double>(), 1e-5)
          << name << " step " << step;
      if (b_real) {
        rb.push_back(tb);
        EXPECT_LT((logits[1][0] - model.forward(Row(rb))[0][-1]).abs().max().item<double>(), 1e-5)
            << name << " step " << step;
      }
    }
    EXPECT_EQ(cache.lengths()[1].item<int64_t>(), static_cast<int64_t>(rb.size()));
  }
}

class GenerationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(7);
    model_ = std::make_shared<LlamaModel>(Base());
    Randomize(*model_);
  }
  std::shared_ptr<LlamaModel> model_;
};

TEST_F(GenerationTest, SamplingIsReproducibleFromItsSeed) {
  GenerationOptions o;
  o.max_new_tokens = 12;
  o.seed = 3;
  o.top_k = 0;
  o.temperature = 1.5;
  const std::vector<std::vector<int64_t>> prompts = {{1, 5, 17}, {4}, {9, 9, 9, 9, 9, 2}};
  absl::StatusOr<std::vector<std::vector<int64_t>>> a = Generate(*model_, prompts, o);
  absl::StatusOr<std::vector<std::vector<int64_t>>> b = Generate(*model_, prompts, o);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->size(), 3u);
  EXPECT_EQ(*a, *b);
  for (const auto& row : *a) {
    EXPECT_EQ(row.size(), 12u);
    for (int64_t t : row) EXPECT_TRUE(t >= 0 && t < 97);
  }
  o.seed = 4;
  absl::StatusOr<std::vector<std::vector<int64_t>>> c = Generate(*model_, prompts, o);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(*a, *c);
  // The cache changes the cost, not the tokens.
  o.use_cache = false;
  absl::StatusOr<std::vector<std::vector<int64_t>>> d = Generate(*model_, prompts, o);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*c, *d);
}

TEST_F(GenerationTest, GreedyFollowsTheArgmaxOfTheFullForwardPass) {
  GenerationOptions o;
  o.max_new_tokens = 10;
  o.temperature = 0;
  const std::vector<int64_t> prompt = {3, 1, 4, 1, 5};
  absl::StatusOr<std::vector<std::vector<int64_t>>> g = Generate(*model_, {prompt, {2, 7}}, o);
  ASSERT_TRUE(g.ok()) << g.status();
  torch::InferenceMode guard;
  std::vector<int64_t> context = prompt;
  for (int64_t t : (*g)[0]) {
    EXPECT_EQ(t, model_->forward(Row(context))[0][-1].argmax().item<int64_t>());
    context.push_back(t);
  }
  // Batched rows continue as they do alone.
  absl::StatusOr<std::vector<std::vector<int64_t>>> alone = Generate(*model_, {{2, 7}}, o);
  ASSERT_TRUE(alone.ok());
  EXPECT_EQ((*g)[1], (*alone)[0]);
  // top_k = 1 and a tiny top_p leave only the most likely token.
  o.temperature = 1;
  o.top_k = 1;
  EXPECT_EQ((*Generate(*model_, {prompt}, o))[0], (*g)[0]);
  o.top_k = 0;
  o.top_p = 1e-6;
  EXPECT_EQ((*Generate(*model_, {prompt}, o))[0], (*g)[0]);
}

TEST_F(GenerationTest, TopPKeepsTheFewestTokensReachingItsMass) {
  // With top_p just above the most likely token's probability, only the two
  // most likely tokens can come out.
  torch::InferenceMode guard;
  model_->eval();
  const std::vector<int64_t> prompt = {8, 6};
  const torch::Tensor probs = torch::softmax(model_->forward(Row(prompt))[0][-1], 0);
  auto [sorted, order] = probs.sort(0, true);
  GenerationOptions o;
  o.max_new_tokens = 1;
  o.temperature = 1;
  o.top_k = 0;
  o.top_p = sorted[0].item<double>() + 1e-4;
  std::set<int64_t> seen;
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    o.seed = seed;
    seen.insert((*Generate(*model_, {prompt}, o))[0][0]);
  }
  EXPECT_EQ(seen, (std::set<int64_t>{order[0].item<int64_t>(), order[1].item<int64_t>()}));
}

TEST_F(GenerationTest, StopsAtTheStopTokenAndKeepsTheContextTheModelSees) {
  GenerationOptions o;
  o.temperature = 0;
  o.max_new_tokens = 6;
  const std::vector<int64_t> greedy = (*Generate(*model_, {{5, 5}}, o))[0];
  o.stop_token = greedy[2];
  const std::vector<int64_t> stopped = (*Generate(*model_, {{5, 5}}, o))[0];
  const auto first = std::find(greedy.begin(), greedy.end(), greedy[2]);
  EXPECT_EQ(stopped, std::vector<int64_t>(greedy.begin(), first + 1));
  // A prompt longer than the model's 48 positions is seen through its last
  // 48 tokens, and generation goes on past them (the cache rebuilt from the
  // last 48), as recomputing over the last 48 does.
  o.stop_token = -1;
  std::vector<int64_t> long_prompt = RandomIds(100, 97);
  std::vector<int64_t> tail(long_prompt.end() - 48, long_prompt.end());
  EXPECT_EQ(*Generate(*model_, {long_prompt}, o), *Generate(*model_, {tail}, o));
  o.max_new_tokens = 60;
  o.temperature = 1;
  absl::StatusOr<std::vector<std::vector<int64_t>>> cached = Generate(*model_, {{1, 2}, tail}, o);
  o.use_cache = false;
  absl::StatusOr<std::vector<std::vector<int64_t>>> recomputed =
      Generate(*model_, {{1, 2}, tail}, o);
  ASSERT_TRUE(cached.ok()) << cached.status();
  ASSERT_TRUE(recomputed.ok());
  EXPECT_EQ((*cached)[0].size(), 60u);
  EXPECT_EQ(*cached, *recomputed);
}

TEST_F(GenerationTest, BadInputIsRefusedNamingWhatIsWrong) {
  GenerationOptions o;
  o.max_new_tokens = 4;
  EXPECT_THAT(Generate(*model_, {{}}, o).status().message(), HasSubstr("prompt 0 holds no tokens"));
  EXPECT_THAT(Generate(*model_, {{1}, {97}}, o).status().message(),
              HasSubstr("prompt 1 holds token 97"));
  o.top_p = 0;
  EXPECT_THAT(Generate(*model_, {{1}}, o).status().message(), HasSubstr("top_p"));
  o.top_p = 1;
  o.temperature = -1;
  EXPECT_THAT(Generate(*model_, {{1}}, o).status().message(), HasSubstr("temperature"));
  o.temperature = 1;
  o.stop_token = 97;
  EXPECT_THAT(Generate(*model_, {{1}}, o).status().message(), HasSubstr("stop token 97"));
}

}  // namespace
}  // namespace retort::models
