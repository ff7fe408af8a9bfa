// Pruning: which weights go for each score, calibration norms against a
// direct computation, and structured pruning that removes only dead neurons
// leaving the outputs unchanged.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "data/dataset.h"
#include "models/classifier.h"
#include "models/llama.h"
#include "student/prune.h"
#include "tests/student/families.h"

namespace retort::student {
namespace {

using ::testing::HasSubstr;

models::LlamaConfig Tiny() {
  models::LlamaConfig c;
  c.vocab_size = 50;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 16;
  return c;
}

std::shared_ptr<data::TensorDataset> Tokens(int64_t n) {
  torch::manual_seed(7);
  torch::Tensor x = torch::randint(50, {n, 12}, torch::kInt64);
  return std::make_shared<data::TensorDataset>(x, torch::zeros({n}, torch::kInt64), 50);
}

TEST(PruneTest, MagnitudeZeroesTheSmallestShareOfEachMatrix) {
  torch::manual_seed(1);
  models::LlamaModel model(Tiny());
  const torch::Tensor before =
      model.model->layers[0]->as<models::LlamaDecoderLayer>()->mlp->up_proj->weight.clone();
  auto report = PruneLlamaUnstructured(0.5, PruneScore::kMagnitude, nullptr, &model);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->zeroed * 2, report->weights);
  const torch::Tensor after =
      model.model->layers[0]->as<models::LlamaDecoderLayer>()->mlp->up_proj->weight;
  const torch::Tensor kept = after != 0;
  EXPECT_EQ(kept.sum().item<int64_t>(), before.numel() / 2);
  // Every kept weight is at least as large as every zeroed one.
  EXPECT_GE(before.abs().masked_select(kept).min().item<float>(),
            before.abs().masked_select(~kept).max().item<float>());
  EXPECT_TRUE(torch::equal(after.masked_select(kept), before.masked_select(kept)));
  // Embeddings and the output head are kept whole.
  EXPECT_EQ((model.model->embed_tokens->weight == 0).sum().item<int64_t>(), 0);
  EXPECT_EQ((model.lm_head->weight == 0).sum().item<int64_t>(), 0);
}

TEST(PruneTest, ActivationScoresCompareWithinEachRow) {
  torch::manual_seed(1);
  models::LlamaModel model(Tiny());
  InputNorms norms;
  for (auto& [name, p] : model.Projections()) {
    // Column 0's inputs are huge: its weights survive in every row.
    torch::Tensor n = torch::ones({p->in_features()}, torch::kFloat64);
    n[0] = 1e6;
    norms[name + ".weight"] = n;
  }
  auto report = PruneLlamaUnstructured(0.75, PruneScore::kActivation, &norms, &model);
  ASSERT_TRUE(report.ok()) << report.status();
  for (auto& [name, p] : model.Projections()) {
    if (name == "lm_head") continue;
    const torch::Tensor zeros_per_row = (p->weight == 0).sum(1);
    EXPECT_TRUE((zeros_per_row == p->in_features() * 3 / 4).all().item<bool>()) << name;
    EXPECT_TRUE((p->weight.select(1, 0) != 0).all().item<bool>()) << name;
  }
  EXPECT_THAT(
      PruneLlamaUnstructured(0.5, PruneScore::kActivation, nullptr, &model).status().message(),
      HasSubstr("calibration"));
  EXPECT_THAT(
      PruneLlamaUnstructured(1.0, PruneScore::kMagnitude, nullptr, &model).status().message(),
      HasSubstr("[0, 1)"));
}

TEST(PruneTest, CalibrationNormsAreTheInputColumnNorms) {
  torch::manual_seed(1);
  models::LlamaModel model(Tiny());
  auto data = Tokens(10);
  auto norms = CollectLlamaInputNorms(model, *data, 0, /*batch_size=*/4);
  ASSERT_TRUE(norms.ok()) << norms.status();
  EXPECT_EQ(norms->size(), 2u * 7u + 1u);  // and lm_head (untied)
  // Layer 0's q_proj reads input_layernorm(embeddings).
  torch::NoGradGuard g;
  auto* layer = model.model->layers[0]->as<models::LlamaDecoderLayer>();
  const torch::Tensor x =
      layer->input_layernorm(model.model->embed_tokens(data->inputs())).to(torch::kFloat64);
  const torch::Tensor expected = x.pow(2).sum(std::vector<int64_t>{0, 1}).sqrt();
  EXPECT_TRUE(
      torch::allclose((*norms)["model.layers.0.self_attn.q_proj.weight"], expected, 1e-6, 1e-9));
}

TEST(PruneTest, RemovingDeadMlpNeuronsLeavesOutputsUnchanged) {
  torch::manual_seed(1);
  models::LlamaModel model(Tiny());
  model.eval();
  {
    torch::NoGradGuard g;
    for (size_t i = 0; i < 2; ++i) {
      auto* mlp = model.model->layers[i]->as<models::LlamaDecoderLayer>()->mlp.get();
      // Neurons 1, 3, 5, ... write nothing: magnitude scores them 0.
      mlp->down_proj->weight.index_fill_(1, torch::arange(1, 64, 2), 0.0);
    }
  }
  const torch::Tensor tokens = torch::randint(50, {2, 10}, torch::kInt64);
  const torch::Tensor expected = model.forward(tokens);
  PruneReport report;
  auto pruned = PruneLlamaMlpNeurons(model, 0.5, PruneScore::kMagnitude, nullptr, 16, &report);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ((*pruned)->config().intermediate_size, 32);
  EXPECT_EQ(report.parameters_before - report.parameters_after, 2 * 3 * 32 * 32);
  EXPECT_TRUE(torch::allclose((*pruned)->forward(tokens), expected, 1e-5, 1e-6));
  // Activation scores: norms from calibration data, same result here.
  auto data = Tokens(8);
  auto norms = CollectLlamaInputNorms(model, *data, 0);
  ASSERT_TRUE(norms.ok());
  auto by_activation =
      PruneLlamaMlpNeurons(model, 0.5, PruneScore::kActivation, &*norms, 16, nullptr);
  ASSERT_TRUE(by_activation.ok()) << by_activation.status();
  EXPECT_TRUE(torch::allclose((*by_activation)->forward(tokens), expected, 1e-5, 1e-6));
}

TEST(PruneTest, ClassifierNeuronsAndWeights) {
  models::ModelSpec spec;
  spec.hidden = {40, 24};
  auto model = *models::CreateClassifier(spec, 3);
  model->eval();
  {
    torch::NoGradGuard g;
    // Hidden units 20..39 of the first layer feed nothing.
    model->named_parameters()["fc1.weight"].narrow(1, 20, 20).zero_();
  }
  const torch::Tensor x = torch::rand({5, 1, 28, 28});
  const torch::Tensor expected = model->forward(x);
  PruneReport report;
  auto pruned = PruneClassifierNeurons(*model, 0.5, PruneScore::kMagnitude, nullptr, 4, &report);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ((*pruned)->spec().hidden, (std::vector<int64_t>{20, 12}));
  // The second layer lost units that did contribute: the outputs change.
  EXPECT_FALSE(torch::allclose((*pruned)->forward(x), expected, 1e-5, 1e-6));
  // One hidden layer whose removed units are all dead: outputs unchanged.
  models::ModelSpec one = spec;
  one.hidden = {40};
  auto single = *models::CreateClassifier(one, 3);
  single->eval();
  {
    torch::NoGradGuard g;
    single->named_parameters()["fc1.weight"].narrow(1, 20, 20).zero_();
  }
  const torch::Tensor single_expected = single->forward(x);
  auto single_pruned =
      PruneClassifierNeurons(*single, 0.5, PruneScore::kMagnitude, nullptr, 4, nullptr);
  ASSERT_TRUE(single_pruned.ok());
  EXPECT_TRUE(torch::allclose((*single_pruned)->forward(x), single_expected, 1e-5, 1e-6));
  // Unstructured, activation-aware, with norms from real forward passes.
  auto data = std::make_shared<data::TensorDataset>(torch::rand({50, 1, 28, 28}),
                                                    torch::zeros({50}, torch::kInt64), 10);
  auto norms = CollectClassifierInputNorms(*single, *data, 0);
  ASSERT_TRUE(norms.ok()) << norms.status();
  EXPECT_EQ((*norms)["fc0.weight"].numel(), 784);
  auto r = PruneClassifierUnstructured(0.5, PruneScore::kActivation, &*norms, single.get());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(static_cast<double>(r->zeroed) / r->weights, 0.5, 0.05);
  EXPECT_TRUE(torch::equal(single->named_parameters()["fc0.bias"],
                           (*models::CreateClassifier(one, 3))->named_parameters()["fc0.bias"]));
}

TEST(PruneTest, RemovingSilentAttentionGroupsLeavesOutputsUnchanged) {
  torch::manual_seed(1);
  models::LlamaModel model(Tiny());  // 4 query heads in 2 key/value groups of width 8
  model.eval();
  {
    torch::NoGradGuard g;
    for (size_t i = 0; i < 2; ++i) {
      auto* attn = model.model->layers[i]->as<models::LlamaDecoderLayer>()->self_attn.get();
      // Group 1 in block 0, group 0 in block 1 (query heads 2-3 / 0-1, o_proj
      // columns 16..31 / 0..15) write nothing.
      attn->o_proj->weight.narrow(1, i == 0 ? 16 : 0, 16).zero_();
    }
  }
  const torch::Tensor tokens = torch::randint(50, {2, 10}, torch::kInt64);
  const torch::Tensor expected = model.forward(tokens);
  PruneReport report;
  auto pruned = PruneLlamaAttentionHeads(model, 0.5, PruneScore::kMagnitude, nullptr, &report);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  const models::LlamaConfig& c = (*pruned)->config();
  EXPECT_EQ(c.num_attention_heads, 2);
  EXPECT_EQ(c.num_key_value_heads, 1);
  EXPECT_EQ(c.head_dim(), 8);  // heads keep their width: 2 x 8 < hidden 32
  EXPECT_EQ(c.hidden_size, 32);
  // q and o lose 16 rows / columns of 32, k and v 8 rows each, per block.
  EXPECT_EQ(report.parameters_before - report.parameters_after, 2 * (2 * 16 * 32 + 2 * 8 * 32));
  EXPECT_EQ(report.parameters_after, c.ParameterCount());
  EXPECT_TRUE(torch::allclose((*pruned)->forward(tokens), expected, 1e-5, 1e-6));
  // Activation scores: o_proj input norms from calibration data agree.
  auto data = Tokens(8);
  auto norms = CollectLlamaInputNorms(model, *data, 0);
  ASSERT_TRUE(norms.ok());
  auto by_activation =
      PruneLlamaAttentionHeads(model, 0.5, PruneScore::kActivation, &*norms, nullptr);
  ASSERT_TRUE(by_activation.ok()) << by_activation.status();
  EXPECT_TRUE(torch::allclose((*by_activation)->forward(tokens), expected, 1e-5, 1e-6));
  // Nothing removed: the same function. At least one group always stays.
  auto none = PruneLlamaAttentionHeads(model, 0.0, PruneScore::kMagnitude, nullptr, nullptr);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ((*none)->config().num_attention_heads, 4);
  EXPECT_TRUE(torch::allclose((*none)->forward(tokens), expected, 1e-5, 1e-6));
  auto most = PruneLlamaAttentionHeads(model, 0.9, PruneScore::kMagnitude, nullptr, nullptr);
  ASSERT_TRUE(most.ok());
  EXPECT_EQ((*most)->config().num_key_value_heads, 1);
  EXPECT_THAT(PruneLlamaAttentionHeads(model, 0.5, PruneScore::kActivation, nullptr, nullptr)
                  .status()
                  .message(),
              HasSubstr("calibration"));
  // Multi-head attention (no groups): single heads go, and the pruned
  // model's shape survives its config.json.
  models::LlamaConfig mha = Tiny();
  mha.num_key_value_heads = 4;
  models::LlamaModel full(mha);
  auto three = PruneLlamaAttentionHeads(full, 0.25, PruneScore::kMagnitude, nullptr, nullptr);
  ASSERT_TRUE(three.ok());
  EXPECT_EQ((*three)->config().num_attention_heads, 3);
  auto reparsed = models::LlamaConfig::FromHuggingFaceJson((*three)->config().ToHuggingFaceJson());
  ASSERT_TRUE(reparsed.ok()) << reparsed.status();
  EXPECT_EQ(*reparsed, (*three)->config());
  EXPECT_EQ(reparsed->head_dim(), 8);
}

// Structured pruning carries over to the other families: their biases go
// with the rows they belong to, q/k norms (one scale over head_dim) stay,
// the window and rope scaling stay in the config. Removing only dead units
// leaves every family's logits unchanged (the sequence of 10 is longer than
// Mistral's window of 4).
TEST(PruneTest, OtherFamiliesPruneDeadNeuronsAndHeadsWithoutChange) {
  for (const std::string& family : testing::OtherFamilies()) {
    torch::manual_seed(1);
    models::LlamaModel model(testing::WithFamily(Tiny(), family));
    model.eval();
    testing::PerturbBiasesAndNorms(model);
    const int64_t hd = model.config().head_dim();
    {
      torch::NoGradGuard g;
      for (size_t i = 0; i < 2; ++i) {
        auto* layer = model.model->layers[i]->as<models::LlamaDecoderLayer>();
        layer->mlp->down_proj->weight.index_fill_(1, torch::arange(1, 64, 2), 0.0);
        // Key/value group 1 in block 0, group 0 in block 1 writes nothing.
        layer->self_attn->o_proj->weight.narrow(1, i == 0 ? 2 * hd : 0, 2 * hd).zero_();
      }
    }
    const torch::Tensor tokens = torch::randint(50, {2, 10}, torch::kInt64);
    const torch::Tensor expected = model.forward(tokens);
    auto neurons = PruneLlamaMlpNeurons(model, 0.5, PruneScore::kMagnitude, nullptr, 16, nullptr);
    ASSERT_TRUE(neurons.ok()) << family << ": " << neurons.status();
    EXPECT_EQ((*neurons)->config().intermediate_size, 32);
    EXPECT_TRUE(torch::allclose((*neurons)->forward(tokens), expected, 1e-5, 1e-6)) << family;
    PruneReport report;
    auto heads = PruneLlamaAttentionHeads(model, 0.5, PruneScore::kMagnitude, nullptr, &report);
    ASSERT_TRUE(heads.ok()) << family << ": " << heads.status();
    models::LlamaConfig want = model.config();
    want.num_attention_heads = 2;
    want.num_key_value_heads = 1;
    want.attention_head_dim = hd;
    EXPECT_EQ((*heads)->config(), want) << family;
    EXPECT_EQ(report.parameters_after, want.ParameterCount()) << family;
    EXPECT_TRUE(torch::allclose((*heads)->forward(tokens), expected, 1e-5, 1e-6)) << family;
  }
}

TEST(PruneTest, CnnChannelsAndUnits) {
  torch::manual_seed(3);
  models::ModelSpec spec;
  spec.architecture = models::Architecture::kCnn;
  spec.hidden = {8, 12, 16};
  auto model = *models::CreateClassifier(spec, 1);
  model->eval();
  auto params = model->named_parameters();
  {
    torch::NoGradGuard g;
    // conv1 channels 4..7 feed nothing (conv2 ignores them), conv2 channels
    // 0..5 feed nothing (fc ignores their 49 columns each), fc units 8..15
    // feed nothing (the classifier ignores them).
    params["conv2.weight"].narrow(1, 4, 4).zero_();
    params["fc.weight"].narrow(1, 0, 6 * 49).zero_();
    params["classifier.weight"].narrow(1, 8, 8).zero_();
  }
  const torch::Tensor x = torch::rand({5, 1, 28, 28});
  const torch::Tensor expected = model->forward(x);
  PruneReport report;
  auto pruned = PruneClassifierNeurons(*model, 0.5, PruneScore::kMagnitude, nullptr, 1, &report);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ((*pruned)->spec().hidden, (std::vector<int64_t>{4, 6, 8}));
  EXPECT_LT(report.parameters_after, report.parameters_before);
  EXPECT_TRUE(torch::allclose((*pruned)->forward(x), expected, 1e-5, 1e-6));
  // Activation scores from forward passes: per channel for the
  // convolutions, per column for the linear layers; the same units go.
  auto data = std::make_shared<data::TensorDataset>(torch::rand({40, 1, 28, 28}),
                                                    torch::zeros({40}, torch::kInt64), 10);
  auto norms = CollectClassifierInputNorms(*model, *data, 0);
  ASSERT_TRUE(norms.ok()) << norms.status();
  EXPECT_EQ((*norms)["conv1.weight"].numel(), 1);
  EXPECT_EQ((*norms)["conv2.weight"].numel(), 8);
  EXPECT_EQ((*norms)["fc.weight"].numel(), 12 * 49);
  EXPECT_EQ((*norms)["classifier.weight"].numel(), 16);
  auto by_activation =
      PruneClassifierNeurons(*model, 0.5, PruneScore::kActivation, &*norms, 1, nullptr);
  ASSERT_TRUE(by_activation.ok()) << by_activation.status();
  EXPECT_TRUE(torch::allclose((*by_activation)->forward(x), expected, 1e-5, 1e-6));
  // Unstructured activation-aware pruning reaches the convolutions too
  // (conv1's rows of 9 weights lose 4 each).
  auto r = PruneClassifierUnstructured(0.5, PruneScore::kActivation, &*norms, model.get());
  ASSERT_TRUE(r.ok()) << r.status();
  // Half of every row at least (the zeros set above and weights reading
  // channels that ReLU silenced on this data score 0 alike).
  EXPECT_GE(static_cast<double>(r->zeroed) / r->weights, 0.49);
  EXPECT_EQ((params["conv1.weight"] == 0).view({8, -1}).sum(1).min().item<int64_t>(), 4);
}

}  // namespace
}  // namespace retort::student
