// SliceGPT: with nothing deleted the sliced model computes the same logits;
// a model whose residual stream lives in a k-dimensional subspace slices to
// width k without loss; sliced checkpoints round-trip; bad input is refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "data/dataset.h"
#include "models/llama.h"
#include "models/llama_checkpoint.h"
#include "models/sliced_llama.h"
#include "student/prune.h"
#include "student/quantize.h"
#include "student/slice.h"
#include "tests/student/families.h"

namespace retort::student {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

models::LlamaConfig Config(bool tied) {
  models::LlamaConfig c;
  c.vocab_size = 60;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 16;
  c.tie_word_embeddings = tied;
  return c;
}

std::shared_ptr<models::LlamaModel> Model(bool tied) {
  torch::manual_seed(11);
  auto m = std::make_shared<models::LlamaModel>(Config(tied));
  torch::NoGradGuard g;
  // Norm scales other than 1, so folding them matters.
  for (auto& p : m->named_parameters()) {
    if (p.key().find("norm") != std::string::npos) p.value().uniform_(0.5, 1.5);
  }
  m->eval();
  return m;
}

std::shared_ptr<data::TensorDataset> Calibration(int64_t n) {
  torch::manual_seed(5);
  return std::make_shared<data::TensorDataset>(torch::randint(60, {n, 12}, torch::kInt64),
                                               torch::zeros({n}, torch::kInt64), 60);
}

TEST(SliceTest, NothingDeletedComputesTheSameFunction) {
  const torch::Tensor tokens = torch::randint(60, {3, 12}, torch::kInt64);
  for (bool tied : {true, false}) {
    auto model = Model(tied);
    const torch::Tensor expected = model->forward(tokens);
    SliceReport report;
    auto sliced =
        SliceLlama(*model, *Calibration(24), {.fraction = 0.0, .multiple_of = 1}, &report);
    ASSERT_TRUE(sliced.ok()) << sliced.status();
    EXPECT_EQ(report.width, 64);
    ASSERT_EQ(report.kept_energy.size(), 1u + 2u * 2u);
    for (double e : report.kept_energy) EXPECT_NEAR(e, 1.0, 1e-9);
    const torch::Tensor got = (*sliced)->forward(tokens);
    EXPECT_LT((got - expected).abs().max().item<double>(), 1e-4) << (tied ? "tied" : "untied");
    // The shortcuts are orthogonal: Q_a^T Q_b of two orthonormal bases.
    const torch::Tensor s = (*sliced)->layers[0]->as<models::SlicedBlock>()->attn_shortcut_Q;
    EXPECT_TRUE(torch::allclose(torch::matmul(s, s.t()), torch::eye(64), 1e-4, 1e-4));
  }
}

// SliceGPT carries over to the other families: biases are added to the
// projections' outputs and q/k norms act on the heads, so neither meets the
// rotated stream and both are kept as they are. With nothing deleted each
// family computes the same function (tokens longer than Mistral's window),
// and a sliced model of each family saves and loads back bit for bit.
TEST(SliceTest, OtherFamiliesSliceAndRoundTrip) {
  const fs::path dir = fs::temp_directory_path() / ("retort_slice_f_" + std::to_string(::getpid()));
  const torch::Tensor tokens = torch::randint(60, {3, 12}, torch::kInt64);
  for (const std::string& family : testing::OtherFamilies()) {
    torch::manual_seed(11);
    auto model = std::make_shared<models::LlamaModel>(testing::WithFamily(Config(false), family));
    testing::PerturbBiasesAndNorms(*model);
    model->eval();
    const torch::Tensor expected = model->forward(tokens);
    auto whole = SliceLlama(*model, *Calibration(24), {.fraction = 0.0, .multiple_of = 1});
    ASSERT_TRUE(whole.ok()) << family << ": " << whole.status();
    EXPECT_LT(((*whole)->forward(tokens) - expected).abs().max().item<double>(), 1e-4) << family;
    auto sliced = SliceLlama(*model, *Calibration(16), {.fraction = 0.25});
    ASSERT_TRUE(sliced.ok()) << family << ": " << sliced.status();
    EXPECT_EQ((*sliced)->config(), model->config());
    ASSERT_TRUE(models::SaveSlicedLlama(**sliced, dir.string()).ok());
    auto loaded = models::LoadSlicedLlama(dir.string());
    ASSERT_TRUE(loaded.ok()) << family << ": " << loaded.status();
    EXPECT_EQ((*loaded)->config(), model->config());
    EXPECT_TRUE(torch::equal((*loaded)->forward(tokens), (*sliced)->forward(tokens))) << family;
    fs::remove_all(dir);
  }
}

TEST(SliceTest, AStreamInASubspaceSlicesWithoutLoss) {
  auto model = Model(/*tied=*/false);
  {
    // Everything that writes the residual stream writes into span(U), 32 of
    // its 64 dimensions.
    torch::NoGradGuard g;
    torch::manual_seed(3);
    const torch::Tensor u = std::get<0>(at::linalg_qr(torch::randn({64, 32})));
    const torch::Tensor p = torch::matmul(u, u.t());
    auto& e = model->model->embed_tokens->weight;
    e.copy_(torch::matmul(e, p));
    for (size_t i = 0; i < 2; ++i) {
      auto* layer = model->model->layers[i]->as<models::LlamaDecoderLayer>();
      layer->self_attn->o_proj->weight.copy_(torch::matmul(p, layer->self_attn->o_proj->weight));
      layer->mlp->down_proj->weight.copy_(torch::matmul(p, layer->mlp->down_proj->weight));
    }
  }
  const torch::Tensor tokens = torch::randint(60, {3, 12}, torch::kInt64);
  const torch::Tensor expected = model->forward(tokens);
  SliceReport report;
  auto sliced = SliceLlama(*model, *Calibration(24), {.fraction = 0.5, .multiple_of = 8}, &report);
  ASSERT_TRUE(sliced.ok()) << sliced.status();
  EXPECT_EQ(report.width, 32);
  for (double e : report.kept_energy) EXPECT_NEAR(e, 1.0, 1e-6);
  EXPECT_LT(((*sliced)->forward(tokens) - expected).abs().max().item<double>(), 1e-4);
  // Three quarters of the same model cannot be exact.
  auto narrow = SliceLlama(*model, *Calibration(24), {.fraction = 0.75, .multiple_of = 8}, &report);
  ASSERT_TRUE(narrow.ok());
  EXPECT_EQ(report.width, 16);
  EXPECT_GT(((*narrow)->forward(tokens) - expected).abs().max().item<double>(), 1e-3);
}

TEST(SliceTest, SlicedCheckpointsRoundTrip) {
  const fs::path dir = fs::temp_directory_path() / ("retort_slice_" + std::to_string(::getpid()));
  auto model = Model(/*tied=*/true);
  auto sliced = SliceLlama(*model, *Calibration(16), {.fraction = 0.25});
  ASSERT_TRUE(sliced.ok()) << sliced.status();
  EXPECT_EQ((*sliced)->width(), 48);
  ASSERT_TRUE(models::SaveSlicedLlama(**sliced, dir.string()).ok());
  EXPECT_TRUE(models::IsSlicedLlamaCheckpoint(dir.string()));
  auto loaded = models::LoadSlicedLlama(dir.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const torch::Tensor tokens = torch::randint(60, {2, 10}, torch::kInt64);
  EXPECT_TRUE(torch::equal((*loaded)->forward(tokens), (*sliced)->forward(tokens)));
  EXPECT_THAT(models::LoadLlamaCheckpoint(dir.string()).status().message(),
              HasSubstr("SliceGPT-sliced"));
  fs::remove_all(dir);
}

// A sliced model quantizes like a Llama (projections to codes and scales,
// shortcut and rotation matrices float32), saves in the quantized layout and
// loads back computing exactly the same; unstructured pruning reaches it.
TEST(SliceTest, SlicedModelsQuantizeAndPrune) {
  const fs::path dir = fs::temp_directory_path() / ("retort_slice_q_" + std::to_string(::getpid()));
  const torch::Tensor tokens = torch::randint(60, {2, 10}, torch::kInt64);
  for (bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    auto model = Model(tied);
    auto sliced = SliceLlama(*model, *Calibration(16), {.fraction = 0.25});
    ASSERT_TRUE(sliced.ok()) << sliced.status();
    const torch::Tensor float_logits = (*sliced)->forward(tokens);
    auto report = QuantizeLlama(*QuantizeOptions::Parse("int8", 0), sliced->get());
    ASSERT_TRUE(report.ok()) << report.status();
    // 2 blocks x 7 projections, the head when untied, and the embeddings.
    EXPECT_EQ(report->quantized_tensors, 2 * 7 + (tied ? 0 : 1) + 1);
    EXPECT_LT(report->quantized_bytes, report->float_bytes / 2);
    const torch::Tensor quantized_logits = (*sliced)->forward(tokens);
    EXPECT_FALSE(torch::equal(quantized_logits, float_logits));
    EXPECT_LT((quantized_logits - float_logits).abs().max().item<double>(), 0.05);
    ASSERT_TRUE(models::SaveSlicedLlama(**sliced, dir.string()).ok());
    auto loaded = models::LoadSlicedLlama(dir.string());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_TRUE((*loaded)->quantization.quantized());
    EXPECT_TRUE(torch::equal((*loaded)->forward(tokens), quantized_logits));
    auto causal = models::LoadCausalLm(dir.string());
    ASSERT_TRUE(causal.ok()) << causal.status();
    EXPECT_EQ((*causal)->quantization.bits, 8);
    fs::remove_all(dir);
  }
  auto sliced = SliceLlama(*Model(false), *Calibration(16), {.fraction = 0.25});
  ASSERT_TRUE(sliced.ok());
  auto pruned = PruneLlamaUnstructured(0.5, PruneScore::kMagnitude, nullptr, sliced->get());
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_NEAR(static_cast<double>(pruned->zeroed) / pruned->weights, 0.5, 0.01);
}

TEST(SliceTest, RefusesBadInput) {
  auto model = Model(true);
  EXPECT_THAT(SliceLlama(*model, *Calibration(4), {.fraction = 1.0}).status().message(),
              HasSubstr("[0, 1)"));
  auto empty = std::make_shared<data::TensorDataset>(torch::zeros({0, 12}, torch::kInt64),
                                                     torch::zeros({0}, torch::kInt64), 60);
  EXPECT_THAT(SliceLlama(*model, *empty, {}).status().message(), HasSubstr("empty"));
  ASSERT_TRUE(QuantizeLlama(*QuantizeOptions::Parse("int8", 0), model.get()).ok());
  EXPECT_EQ(SliceLlama(*model, *Calibration(4), {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace retort::student
