// Block quantization against hand-computed values and its error bounds, the
// quantized Projection, and quantized Llama checkpoints (save, load, hostile
// files).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "models/block_quant.h"
#include "models/checkpoint_file.h"
#include "models/llama.h"
#include "models/llama_checkpoint.h"
#include "models/projection.h"
#include "models/safetensors_file.h"

namespace retort::models {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

TEST(BlockQuantTest, Int8PerChannelMatchesTheFormula) {
  // Row 0: max |w| = 2.54 -> d = 0.02; row 1: all zeros.
  const torch::Tensor w = torch::tensor({{2.54f, -1.0f, 0.011f, 0.009f}, {0.f, 0.f, 0.f, 0.f}});
  BlockQuantized q = *QuantizeBlocks(w, 8, 0);
  EXPECT_EQ(q.block_size, 4);
  EXPECT_NEAR(q.scales[0][0].item<float>(), 0.02f, 1e-7);
  EXPECT_EQ(q.scales[1][0].item<float>(), 0.0f);
  // 2.54/0.02 = 127, -1/0.02 = -50, 0.55 rounds away from zero to 1, 0.45 to 0.
  EXPECT_TRUE(torch::equal(q.codes[0], torch::tensor({127, -50, 1, 0}, torch::kInt8)));
  EXPECT_TRUE(torch::equal(q.codes[1], torch::zeros({4}, torch::kInt8)));
  EXPECT_EQ(q.Describe(), "int8 per-channel");
  EXPECT_EQ(q.StorageBytes(4), 8 + 2 * 4);
}

TEST(BlockQuantTest, Int4UsesTheSignedExtremeAsMinusEight) {
  // One block of 4: the extreme is -1.6 -> d = 0.2, code -8 exactly;
  // 1.3 / 0.2 = 6.5 -> floor(7.0) = 7; 0.5 -> 2.5 -> 3 (half up); -0.1 -> -0.5 -> 0.
  const torch::Tensor w = torch::tensor({{-1.6f, 1.3f, 0.5f, -0.1f}});
  BlockQuantized q = *QuantizeBlocks(w, 4, 4);
  EXPECT_NEAR(q.scales[0][0].item<float>(), 0.2f, 1e-7);
  EXPECT_TRUE(torch::equal(q.codes[0], torch::tensor({-8, 7, 3, 0}, torch::kInt8)));
  // A positive extreme gets a negative scale and code -8 too.
  BlockQuantized p = *QuantizeBlocks(torch::tensor({{0.8f, -0.4f}}), 4, 2);
  EXPECT_NEAR(p.scales[0][0].item<float>(), -0.1f, 1e-7);
  EXPECT_TRUE(torch::equal(p.codes[0], torch::tensor({-8, 4}, torch::kInt8)));
}

TEST(BlockQuantTest, ErrorIsAtMostHalfAStepPerElement) {
  torch::manual_seed(3);
  const torch::Tensor w = torch::randn({16, 128});
  for (auto [bits, block] :
       std::vector<std::pair<int, int64_t>>{{8, 0}, {8, 32}, {4, 32}, {4, 64}, {4, 128}}) {
    BlockQuantized q = *QuantizeBlocks(w, bits, block);
    const int64_t b = q.block_size;
    const torch::Tensor step = q.scales.abs().repeat_interleave(b, 1);
    const torch::Tensor error = (w - q.Dequantize()).abs();
    // Codes reach -8 on the extreme's side but only 7 on the other: a value
    // beyond 7.5 steps there (up to 8) is clamped, at most one step off.
    const torch::Tensor in_range = (w.abs() <= step * 7.5) | (bits == 8);
    EXPECT_TRUE((error <= step * 0.5 + 1e-6).logical_or(~in_range).all().item<bool>())
        << bits << " bits, block " << b;
    EXPECT_TRUE((error <= step + 1e-6).all().item<bool>()) << bits << " bits, block " << b;
    EXPECT_EQ(q.codes.min().item<int>() >= (bits == 8 ? -127 : -8), true);
    EXPECT_EQ(q.codes.max().item<int>() <= (bits == 8 ? 127 : 7), true);
    // Quantizing the dequantized matrix again gives the same codes.
    BlockQuantized again = *QuantizeBlocks(q.Dequantize(), bits, block);
    EXPECT_TRUE(torch::equal(again.codes, q.codes)) << bits << " bits, block " << b;
  }
}

TEST(BlockQuantTest, RejectsWhatItCannotQuantize) {
  EXPECT_THAT(QuantizeBlocks(torch::ones({4, 100}), 4, 64).status().message(),
              HasSubstr("group size 64 does not divide the 100 columns"));
  EXPECT_THAT(QuantizeBlocks(torch::ones({2, 2, 2}), 8, 0).status().message(), HasSubstr("2-D"));
  EXPECT_THAT(QuantizeBlocks(torch::ones({2, 2}), 3, 0).status().message(), HasSubstr("4 or 8"));
  torch::Tensor nan = torch::ones({2, 2});
  nan[0][1] = NAN;
  EXPECT_THAT(QuantizeBlocks(nan, 8, 0).status().message(), HasSubstr("NaN"));
  // The fallback: 4 bits in the largest common group of 16 or more, else 8
  // bits per channel.
  BlockQuantized f = *QuantizeWithFallback(torch::ones({4, 100}), 4, 64);
  EXPECT_EQ(f.bits, 8);
  EXPECT_EQ(f.block_size, 100);
  BlockQuantized g = *QuantizeWithFallback(torch::ones({4, 784}), 4, 64);
  EXPECT_EQ(g.bits, 4);
  EXPECT_EQ(g.block_size, 16);
  EXPECT_EQ(QuantizeWithFallback(torch::ones({4, 784}), 8, 64)->block_size, 784);
}

TEST(BlockQuantTest, PacksTwoCodesAByteLowNibbleFirst) {
  torch::Tensor codes = torch::arange(-8, 8, torch::kInt8).view({1, 16});
  torch::Tensor packed = PackInt4(codes);
  ASSERT_EQ(packed.sizes(), (std::vector<int64_t>{1, 8}));
  EXPECT_EQ(packed[0][0].item<uint8_t>(), 0x10);  // -8 -> 0 low, -7 -> 1 high
  EXPECT_EQ(packed[0][7].item<uint8_t>(), 0xFE);  // 6 -> 14 low, 7 -> 15 high
  EXPECT_TRUE(torch::equal(UnpackInt4(packed), codes));
}

TEST(ProjectionTest, QuantizedForwardUsesTheDequantizedWeight) {
  torch::manual_seed(5);
  Projection p(64, 32);
  const torch::Tensor x = torch::randn({3, 64});
  for (auto [bits, block] : std::vector<std::pair<int, int64_t>>{{8, 0}, {4, 32}}) {
    Projection copy(64, 32);
    {
      torch::NoGradGuard g;
      copy->weight.copy_(p->weight);
    }
    BlockQuantized q = *QuantizeBlocks(p->weight, bits, block);
    const torch::Tensor expected = torch::linear(x, q.Dequantize());
    copy->SetQuantized(q);
    EXPECT_TRUE(copy->is_quantized());
    EXPECT_EQ(copy->weight.numel(), 0);
    EXPECT_TRUE(torch::allclose(copy->forward(x), expected, 1e-6, 1e-6));
    EXPECT_LT(copy->WeightBytes(), 64 * 32 * 4 / (bits == 8 ? 3 : 6));
  }
}

TEST(ProjectionTest, DrawsTheSameInitialWeightsAsLinear) {
  torch::manual_seed(9);
  torch::nn::Linear linear(torch::nn::LinearOptions(48, 16).bias(false));
  torch::manual_seed(9);
  Projection projection(48, 16);
  EXPECT_TRUE(torch::equal(linear->weight, projection->weight));
}

class QuantizedCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("retort_qckpt_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    config_.vocab_size = 96;
    config_.hidden_size = 64;
    config_.intermediate_size = 168;  // 168 = 8 x 21: 4-bit groups of 32 or 64 fall back to int8
    config_.num_hidden_layers = 2;
    config_.num_attention_heads = 4;
    config_.num_key_value_heads = 2;
    config_.max_position_embeddings = 32;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) { return (dir_ / name).string(); }

  // Quantizes every projection (and the embeddings) of `model` as
  // student::QuantizeLlama does.
  static void Quantize(LlamaModel& model, int bits, int64_t group) {
    for (auto& [name, p] : model.Projections()) {
      p->SetQuantized(*QuantizeWithFallback(p->weight, bits, group));
    }
    torch::NoGradGuard g;
    model.model->embed_tokens->weight.copy_(
        QuantizeWithFallback(model.model->embed_tokens->weight, bits, group)->Dequantize());
    model.quantization = {bits, group, true};
  }

  LlamaConfig config_;
  fs::path dir_;
};

TEST_F(QuantizedCheckpointTest, SavesAndLoadsTheSameModel) {
  for (auto [bits, group] : std::vector<std::pair<int, int64_t>>{{8, 0}, {4, 32}, {4, 64}}) {
    torch::manual_seed(2);
    LlamaModel model(config_);
    model.eval();
    Quantize(model, bits, group);
    const torch::Tensor tokens = torch::randint(96, {2, 16}, torch::kInt64);
    const torch::Tensor expected = model.forward(tokens);
    const std::string dir = Path("q" + std::to_string(bits) + "_" + std::to_string(group));
    ASSERT_TRUE(SaveLlamaCheckpoint(model, dir).ok());
    NamedTensors file = *ReadSafetensors(dir + "/model.safetensors");
    EXPECT_EQ(file.Get("model.layers.0.mlp.up_proj.weight")->scalar_type(),
              bits == 8 ? torch::kInt8 : torch::kUInt8);
    // down_proj has 168 columns: no 4-bit group of 16 or more divides them.
    EXPECT_EQ(file.Get("model.layers.0.mlp.down_proj.weight")->scalar_type(), torch::kInt8);
    EXPECT_TRUE(file.Get("model.layers.0.self_attn.q_proj.weight_scale").ok());
    EXPECT_EQ(file.Get("model.norm.weight")->scalar_type(), torch::kFloat32);
    auto loaded = LoadLlamaCheckpoint(dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ((*loaded)->quantization.bits, bits);
    EXPECT_TRUE(
        (*loaded)->model->layers[0]->as<LlamaDecoderLayer>()->self_attn->q_proj->is_quantized());
    EXPECT_TRUE(torch::equal((*loaded)->forward(tokens), expected)) << bits << " bits g" << group;
  }
}

TEST_F(QuantizedCheckpointTest, QuantizedModelsDigestTheirCodesAndRunInBf16) {
  torch::manual_seed(2);
  LlamaModel int8(config_), int4(config_);
  {
    torch::NoGradGuard g;
    auto src = int8.named_parameters();
    for (auto& p : int4.named_parameters()) p.value().copy_(src[p.key()]);
  }
  const std::string float_digest = WeightsSha256(int8);
  EXPECT_EQ(WeightsSha256(int4), float_digest);
  Quantize(int8, 8, 0);
  Quantize(int4, 4, 32);
  // The codes and scales are buffers: the teacher fingerprint tells them apart.
  EXPECT_NE(WeightsSha256(int8), float_digest);
  EXPECT_NE(WeightsSha256(int8), WeightsSha256(int4));
  // An untied quantized head works for a bf16 forward pass too.
  int8.eval();
  const torch::Tensor tokens = torch::randint(96, {1, 8}, torch::kInt64);
  const torch::Tensor f32 = int8.forward(tokens);
  int8.to(torch::kBFloat16);
  const torch::Tensor bf16 = int8.forward(tokens).to(torch::kFloat32);
  EXPECT_LT((bf16 - f32).abs().max().item<float>(), 0.1);
  // And a quantized model is no source of layers for a student.
  EXPECT_EQ(LlamaFromLayers(int4, config_, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(QuantizedCheckpointTest, RejectsTamperedTensorsWithTheirNames) {
  torch::manual_seed(2);
  LlamaModel model(config_);
  Quantize(model, 8, 0);
  const std::string dir = Path("tampered");
  ASSERT_TRUE(SaveLlamaCheckpoint(model, dir).ok());
  NamedTensors file = *ReadSafetensors(dir + "/model.safetensors");
  auto rewrite = [&](const std::string& name, torch::Tensor value) {
    NamedTensors copy = file;
    for (auto& [n, t] : copy.tensors) {
      if (n == name) t = value;
    }
    ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", copy).ok());
  };
  rewrite("model.layers.1.self_attn.v_proj.weight_scale", torch::ones({32, 3}));
  EXPECT_THAT(LoadLlamaCheckpoint(dir).status().message(),
              HasSubstr("model.layers.1.self_attn.v_proj.weight"));
  rewrite("model.layers.0.mlp.gate_proj.weight_scale",
          torch::full({168, 1}, std::numeric_limits<float>::infinity()));
  EXPECT_THAT(LoadLlamaCheckpoint(dir).status().message(), HasSubstr("NaN or infinity"));
  rewrite("model.layers.0.mlp.gate_proj.weight", torch::full({168, 64}, -128, torch::kInt8));
  EXPECT_THAT(LoadLlamaCheckpoint(dir).status().message(), HasSubstr("-128"));
}

}  // namespace
}  // namespace retort::models
