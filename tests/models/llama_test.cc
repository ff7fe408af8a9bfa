// The Llama model against an independent reference (tests/models/
// llama_reference.py, float64, written from transformers' modeling_llama.py
// with Debian's python3-torch), its checkpoint layout in both directions,
// its config.json, layer-subset initialisation and sampling.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "models/llama.h"
#include "models/llama_checkpoint.h"
#include "models/llama_config.h"
#include "models/named_shapes.h"
#include "models/safetensors_file.h"

namespace retort::models {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

LlamaConfig Small() {
  LlamaConfig c;
  c.vocab_size = 97;
  c.hidden_size = 64;
  c.intermediate_size = 172;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  return c;
}

bool HaveReferencePython() {
  return std::system("/usr/bin/python3 -c 'import torch' 2>/dev/null") == 0;
}

std::string ReferenceScript() {
  return std::string(RETORT_SOURCE_DIR) + "/tests/models/llama_reference.py";
}

class LlamaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("retort_llama_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) { return (dir_ / name).string(); }

  // The reference's float64 logits for `tokens` with the weights in `dir`.
  torch::Tensor ReferenceLogits(const std::string& dir,
                                const std::vector<std::vector<int64_t>>& tokens) {
    const std::string in = Path("tokens.json"), out = Path("logits.json");
    std::ofstream(in) << nlohmann::json(tokens).dump();
    const std::string cmd =
        "/usr/bin/python3 " + ReferenceScript() + " logits " + dir + " " + in + " " + out;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream f(out);
    const nlohmann::json j = nlohmann::json::parse(f);
    std::vector<double> flat;
    for (const auto& b : j["logits"]) {
      for (const auto& t : b) {
        for (const auto& v : t) flat.push_back(v.get<double>());
      }
    }
    std::vector<int64_t> shape = j["shape"].get<std::vector<int64_t>>();
    return torch::tensor(flat, torch::kFloat64).reshape(shape);
  }

  fs::path dir_;
};

torch::Tensor Tokens(const std::vector<std::vector<int64_t>>& rows) {
  std::vector<int64_t> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return torch::tensor(flat, torch::kInt64).reshape({static_cast<int64_t>(rows.size()), -1});
}

const std::vector<std::vector<int64_t>> kBatch = {{1, 5, 17, 42, 96, 3, 8, 8, 50},
                                                  {2, 0, 11, 11, 60, 7, 33, 90, 4}};

TEST_F(LlamaTest, ParameterNamesAreTransformersNames) {
  LlamaModel model(Small());
  std::set<std::string> names;
  for (const auto& p : model.named_parameters()) names.insert(p.key());
  EXPECT_TRUE(names.count("model.embed_tokens.weight"));
  EXPECT_TRUE(names.count("model.norm.weight"));
  EXPECT_TRUE(names.count("lm_head.weight"));
  for (const char* n :
       {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
        "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
        "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight"}) {
    EXPECT_TRUE(names.count(std::string("model.layers.1.") + n)) << n;
  }
  EXPECT_EQ(names.size(), 3u + 2u * 9u);
  int64_t count = 0;
  for (const auto& p : model.parameters()) count += p.numel();
  EXPECT_EQ(count, Small().ParameterCount());
  // grouped-query: k and v have kv_heads * head_dim rows
  EXPECT_EQ(model.model->layers[0]->as<LlamaDecoderLayer>()->self_attn->k_proj->weight.size(0),
            2 * 16);

  LlamaConfig tied = Small();
  tied.tie_word_embeddings = true;
  LlamaModel t(tied);
  int64_t tied_count = 0;
  for (const auto& p : t.named_parameters()) {
    EXPECT_NE(p.key(), "lm_head.weight");
    tied_count += p.value().numel();
  }
  EXPECT_EQ(tied_count, tied.ParameterCount());
  EXPECT_EQ(tied_count, count - 97 * 64);
}

TEST_F(LlamaTest, IsCausal) {
  torch::manual_seed(3);
  LlamaModel model(Small());
  model.eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor a = model.forward(Tokens(kBatch));
  std::vector<std::vector<int64_t>> changed = kBatch;
  for (auto& r : changed) r[6] = r[7] = r[8] = 9;
  const torch::Tensor b = model.forward(Tokens(changed));
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{2, 9, 97}));
  EXPECT_TRUE(torch::allclose(a.narrow(1, 0, 6), b.narrow(1, 0, 6), 0, 0));
  EXPECT_FALSE(torch::allclose(a.narrow(1, 6, 3), b.narrow(1, 6, 3)));
}

// Weights the reference wrote (its own safetensors writer, transformers'
// names) load into our model and give the reference's logits; this covers
// RMSNorm, rotary embeddings (rotate-half), grouped-query attention,
// SwiGLU and the config.json parser.
TEST_F(LlamaTest, MatchesTheIndependentReferenceOnItsWeights) {
  if (!HaveReferencePython()) GTEST_SKIP() << "Debian's python3-torch is not installed";
  struct Case {
    const char* config;
    const char* dtype;
    double tolerance;
  };
  for (const Case& c :
       {Case{"{}", "f32", 1e-4}, Case{R"({"num_key_value_heads": 1})", "f32", 1e-4},
        Case{R"({"num_key_value_heads": 4, "tie_word_embeddings": true})", "f32", 1e-4},
        Case{R"({"rope_theta": 500000.0, "num_hidden_layers": 3})", "f32", 1e-4},
        // heads narrower than hidden / heads, as head pruning leaves them
        Case{R"({"head_dim": 8, "num_attention_heads": 2, "num_key_value_heads": 1})", "f32", 1e-4},
        // bf16 weights: both sides read the same rounded values
        Case{"{}", "bf16", 1e-4}}) {
    SCOPED_TRACE(std::string(c.config) + " " + c.dtype);
    const std::string dir = Path("ref");
    fs::remove_all(dir);
    const std::string cmd = "/usr/bin/python3 " + ReferenceScript() + " write " + dir +
                            " --seed 11 --dtype " + c.dtype + " --config '" + c.config + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    absl::StatusOr<std::shared_ptr<LlamaModel>> model = LoadLlamaCheckpoint(dir);
    ASSERT_TRUE(model.ok()) << model.status();
    (*model)->eval();
    torch::NoGradGuard no_grad;
    const torch::Tensor ours = (*model)->forward(Tokens(kBatch)).to(torch::kFloat64);
    const torch::Tensor ref = ReferenceLogits(dir, kBatch);
    ASSERT_EQ(ours.sizes(), ref.sizes());
    const double diff = (ours - ref).abs().max().item<double>();
    EXPECT_LT(diff, c.tolerance);
    EXPECT_GT(ref.abs().max().item<double>(), 1e-2);  // not trivially zero
  }
}

// What we save, the reference loads (its own parser) and computes the same
// logits from.
TEST_F(LlamaTest, OurCheckpointLoadsInTheReference) {
  if (!HaveReferencePython()) GTEST_SKIP() << "Debian's python3-torch is not installed";
  torch::manual_seed(5);
  LlamaModel model(Small());
  model.eval();
  const std::string dir = Path("ours");
  ASSERT_TRUE(SaveLlamaCheckpoint(model, dir).ok());

  std::ifstream f(dir + "/config.json");
  const nlohmann::json config = nlohmann::json::parse(f);
  EXPECT_EQ(config["model_type"], "llama");
  EXPECT_EQ(config["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(config["hidden_act"], "silu");
  EXPECT_EQ(config["num_key_value_heads"], 2);
  EXPECT_EQ(config["vocab_size"], 97);
  absl::StatusOr<NamedTensors> tensors = ReadSafetensors(dir + "/model.safetensors");
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  EXPECT_EQ(tensors->metadata.at("format"), "pt");

  torch::NoGradGuard no_grad;
  const torch::Tensor ours = model.forward(Tokens(kBatch)).to(torch::kFloat64);
  const torch::Tensor ref = ReferenceLogits(dir, kBatch);
  EXPECT_LT((ours - ref).abs().max().item<double>(), 1e-4);
}

// Sharded checkpoints both ways: the reference's shards and index load into
// our model; ours (--max_shard_bytes) load into the reference.
TEST_F(LlamaTest, ShardedCheckpointsMatchTheReferenceBothWays) {
  if (!HaveReferencePython()) GTEST_SKIP() << "Debian's python3-torch is not installed";
  const std::string ref_dir = Path("ref_sharded");
  const std::string cmd = "/usr/bin/python3 " + ReferenceScript() + " write " + ref_dir +
                          " --seed 13 --dtype bf16 --shards 3";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  ASSERT_TRUE(PathExists(ref_dir + "/model.safetensors.index.json"));
  ASSERT_FALSE(PathExists(ref_dir + "/model.safetensors"));
  torch::NoGradGuard no_grad;
  for (bool keep : {false, true}) {
    absl::StatusOr<std::shared_ptr<LlamaModel>> model =
        LoadLlamaCheckpoint(ref_dir, {.keep_file_dtype = keep});
    ASSERT_TRUE(model.ok()) << model.status();
    EXPECT_EQ((*model)->model->embed_tokens->weight.scalar_type(),
              keep ? torch::kBFloat16 : torch::kFloat32);
    if (!keep) {
      const torch::Tensor ours = (*model)->forward(Tokens(kBatch)).to(torch::kFloat64);
      EXPECT_LT((ours - ReferenceLogits(ref_dir, kBatch)).abs().max().item<double>(), 1e-4);
    }
  }

  torch::manual_seed(6);
  LlamaModel model(Small());
  model.eval();
  LlamaSaveOptions sharded;
  sharded.max_shard_bytes = 40000;  // 12 shards of the 0.4 MB of weights
  const std::string dir = Path("ours_sharded");
  ASSERT_TRUE(SaveLlamaCheckpoint(model, dir, sharded).ok());
  EXPECT_FALSE(PathExists(dir + "/model.safetensors"));
  EXPECT_TRUE(PathExists(dir + "/model.safetensors.index.json"));
  EXPECT_TRUE(PathExists(dir + "/model-00012-of-00012.safetensors"));
  const torch::Tensor ours = model.forward(Tokens(kBatch)).to(torch::kFloat64);
  EXPECT_LT((ours - ReferenceLogits(dir, kBatch)).abs().max().item<double>(), 1e-4);
  absl::StatusOr<std::shared_ptr<LlamaModel>> back = LoadLlamaCheckpoint(dir);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(torch::equal((*back)->forward(Tokens(kBatch)).to(torch::kFloat64), ours));
}

TEST_F(LlamaTest, CheckpointRoundTripsExactlyAndInBf16) {
  LlamaConfig c = Small();
  c.tie_word_embeddings = true;
  torch::manual_seed(2);
  LlamaModel model(c);
  model.eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor before = model.forward(Tokens(kBatch));
  ASSERT_TRUE(SaveLlamaCheckpoint(model, Path("f32")).ok());
  absl::StatusOr<std::shared_ptr<LlamaModel>> back = LoadLlamaCheckpoint(Path("f32"));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->config(), c);
  (*back)->eval();
  EXPECT_TRUE(torch::equal((*back)->forward(Tokens(kBatch)), before));

  LlamaSaveOptions bf16;
  bf16.dtype = torch::kBFloat16;
  ASSERT_TRUE(SaveLlamaCheckpoint(model, Path("bf16"), bf16).ok());
  absl::StatusOr<NamedTensors> t = ReadSafetensors(Path("bf16") + "/model.safetensors");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->tensors.front().second.scalar_type(), torch::kBFloat16);
  back = LoadLlamaCheckpoint(Path("bf16"));
  ASSERT_TRUE(back.ok()) << back.status();
  (*back)->eval();
  const torch::Tensor after = (*back)->forward(Tokens(kBatch));
  EXPECT_TRUE(torch::allclose(after, before, 0, 0.05));
  EXPECT_FALSE(torch::equal(after, before));

  // Kept in the file's dtype: the same bf16 values, no float32 copy.
  absl::StatusOr<std::shared_ptr<LlamaModel>> kept =
      LoadLlamaCheckpoint(Path("bf16"), {.keep_file_dtype = true});
  ASSERT_TRUE(kept.ok()) << kept.status();
  const auto converted = (*back)->named_parameters();
  for (const auto& p : (*kept)->named_parameters()) {
    EXPECT_EQ(p.value().scalar_type(), torch::kBFloat16) << p.key();
    EXPECT_TRUE(torch::equal(p.value().to(torch::kFloat32), converted[p.key()])) << p.key();
  }
}

TEST_F(LlamaTest, RejectsCheckpointsThatDoNotFitWithTheReason) {
  torch::manual_seed(2);
  LlamaModel model(Small());
  ASSERT_TRUE(SaveLlamaCheckpoint(model, Path("ok")).ok());

  absl::StatusOr<std::shared_ptr<LlamaModel>> missing = LoadLlamaCheckpoint(Path("nope"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);

  // A tensor left out.
  fs::create_directories(Path("short"));
  fs::copy(Path("ok") + "/config.json", Path("short") + "/config.json");
  NamedTensors t = *ReadSafetensors(Path("ok") + "/model.safetensors");
  std::vector<std::pair<std::string, torch::Tensor>> kept;
  for (auto& p : t.tensors) {
    if (p.first != "model.layers.1.mlp.up_proj.weight") kept.push_back(p);
  }
  t.tensors = kept;
  ASSERT_TRUE(WriteSafetensors(Path("short") + "/model.safetensors", t).ok());
  absl::StatusOr<std::shared_ptr<LlamaModel>> s = LoadLlamaCheckpoint(Path("short"));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.status().message(), HasSubstr("model.layers.1.mlp.up_proj.weight"));

  // A config the weights do not fit.
  std::ifstream f(Path("ok") + "/config.json");
  nlohmann::json config = nlohmann::json::parse(f);
  config["intermediate_size"] = 100;
  fs::create_directories(Path("wide"));
  fs::copy(Path("ok") + "/model.safetensors", Path("wide") + "/model.safetensors");
  std::ofstream(Path("wide") + "/config.json") << config.dump();
  s = LoadLlamaCheckpoint(Path("wide"));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.status().message(), HasSubstr("mlp"));

  // Features we do not implement are named.
  config = nlohmann::json::parse(std::ifstream(Path("ok") + "/config.json"));
  config["hidden_act"] = "gelu";
  EXPECT_THAT(LlamaConfig::FromHuggingFaceJson(config).status().message(), HasSubstr("hidden_act"));
  config = nlohmann::json::parse(std::ifstream(Path("ok") + "/config.json"));
  config["model_type"] = "gpt2";
  EXPECT_FALSE(LlamaConfig::FromHuggingFaceJson(config).ok());
}

// Qwen2 (q/k/v biases), Qwen3 (q/k norms, wide heads), Mistral (a sliding
// window shorter than the sequence) and Llama 3 (rope_scaling llama3)
// against the reference, both directions, sharded and not.
TEST_F(LlamaTest, FamiliesMatchTheReferenceBothWaysShardedAndNot) {
  if (!HaveReferencePython()) GTEST_SKIP() << "Debian's python3-torch is not installed";
  struct Family {
    const char* shape;   // ours: models/named_shapes.h
    const char* config;  // the reference's
  };
  const Family families[] = {
      {"tiny-qwen2", R"({"model_type": "qwen2", "intermediate_size": 96})"},
      {"tiny-qwen3", R"({"model_type": "qwen3", "head_dim": 24, "intermediate_size": 96})"},
      {"tiny-mistral",
       R"({"model_type": "mistral", "sliding_window": 5, "intermediate_size": 96})"},
      {"tiny-llama3", R"({"intermediate_size": 96, "rope_scaling": {"rope_type": "llama3",
          "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}})"},
  };
  torch::NoGradGuard no_grad;
  for (const Family& f : families) {
    SCOPED_TRACE(f.shape);
    absl::StatusOr<LlamaConfig> shape = NamedShape(f.shape);
    ASSERT_TRUE(shape.ok()) << shape.status();
    for (int shards : {1, 2}) {
      SCOPED_TRACE(shards);
      // We read the reference's files.
      const std::string dir = Path(std::string("ref_") + f.shape + std::to_string(shards));
      const std::string cmd = "/usr/bin/python3 " + ReferenceScript() + " write " + dir +
                              " --seed 21 --shards " + std::to_string(shards) + " --config '" +
                              f.config + "'";
      ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
      absl::StatusOr<std::shared_ptr<LlamaModel>> theirs = LoadLlamaCheckpoint(dir);
      ASSERT_TRUE(theirs.ok()) << theirs.status();
      EXPECT_EQ((*theirs)->config().model_type, shape->model_type);
      EXPECT_EQ((*theirs)->config().qkv_bias, shape->qkv_bias);
      EXPECT_EQ((*theirs)->config().qk_norm, shape->qk_norm);
      EXPECT_EQ((*theirs)->config().sliding_window, shape->sliding_window);
      EXPECT_EQ((*theirs)->config().rope_scaling, shape->rope_scaling);
      const torch::Tensor ref = ReferenceLogits(dir, kBatch);
      const torch::Tensor got = (*theirs)->forward(Tokens(kBatch)).to(torch::kFloat64);
      EXPECT_LT((got - ref).abs().max().item<double>(), 1e-4);

      // The reference reads ours.
      torch::manual_seed(8);
      LlamaModel model(*shape);
      model.eval();
      LlamaSaveOptions save;
      save.max_shard_bytes = shards == 1 ? 0 : 60000;
      const std::string ours = Path(std::string("ours_") + f.shape + std::to_string(shards));
      ASSERT_TRUE(SaveLlamaCheckpoint(model, ours, save).ok());
      EXPECT_EQ(PathExists(ours + "/model.safetensors.index.json"), shards > 1);
      const torch::Tensor mine = model.forward(Tokens(kBatch)).to(torch::kFloat64);
      EXPECT_LT((mine - ReferenceLogits(ours, kBatch)).abs().max().item<double>(), 1e-4);
      absl::StatusOr<LlamaConfig> back = ReadLlamaConfig(ours);
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_EQ(*back, *shape);
    }
  }
}

TEST_F(LlamaTest, ConfigsWithUnimplementedFeaturesAreRefusedNamingThem) {
  LlamaConfig base = Small();
  auto refused = [&](const std::string& model_type, const nlohmann::json& extra) {
    nlohmann::json j = base.ToHuggingFaceJson();
    j["model_type"] = model_type;
    j.update(extra);
    absl::StatusOr<LlamaConfig> c = LlamaConfig::FromHuggingFaceJson(j);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << j.dump();
    return std::string(c.status().message());
  };
  EXPECT_THAT(refused("llama", {{"rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}}}),
              HasSubstr("'yarn'"));
  EXPECT_THAT(refused("llama", {{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}}),
              HasSubstr("'linear'"));
  EXPECT_THAT(refused("llama", {{"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}}}),
              HasSubstr("low_freq_factor"));
  EXPECT_THAT(refused("llama", {{"attention_bias", true}}), HasSubstr("attention_bias"));
  EXPECT_THAT(refused("qwen3", {{"attention_bias", true}}), HasSubstr("attention_bias"));
  EXPECT_THAT(refused("llama", {{"mlp_bias", true}}), HasSubstr("mlp_bias"));
  EXPECT_THAT(refused("qwen2", {{"use_sliding_window", true}}), HasSubstr("use_sliding_window"));
  EXPECT_THAT(refused("gemma", nlohmann::json::object()), HasSubstr("'gemma'"));
  EXPECT_THAT(refused("mistral", {{"sliding_window", -3}}), HasSubstr("sliding_window"));
  // "default" is plain rotary embeddings.
  nlohmann::json plain = base.ToHuggingFaceJson();
  plain["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_TRUE(LlamaConfig::FromHuggingFaceJson(plain).ok());
  // The published shapes are valid configs that round-trip through JSON.
  for (const std::string& name : NamedShapeNames()) {
    absl::StatusOr<LlamaConfig> c = NamedShape(name);
    ASSERT_TRUE(c.ok()) << name;
    EXPECT_TRUE(c->Validate().ok()) << name;
    EXPECT_EQ(*LlamaConfig::FromHuggingFaceJson(c->ToHuggingFaceJson()), *c) << name;
  }
  EXPECT_NEAR(NamedShape("llama-3.2-1b")->ParameterCount() / 1e9, 1.236, 0.001);
  EXPECT_NEAR(NamedShape("qwen3-0.6b")->ParameterCount() / 1e9, 0.596, 0.001);
  EXPECT_NEAR(NamedShape("qwen2.5-0.5b")->ParameterCount() / 1e9, 0.494, 0.001);
  EXPECT_FALSE(NamedShape("gpt-5").ok());
  int64_t counted = 0;
  for (const auto& p : LlamaModel(*NamedShape("tiny-qwen2")).parameters()) counted += p.numel();
  EXPECT_EQ(counted, NamedShape("tiny-qwen2")->ParameterCount());
  counted = 0;
  for (const auto& p : LlamaModel(*NamedShape("tiny-qwen3")).parameters()) counted += p.numel();
  EXPECT_EQ(counted, NamedShape("tiny-qwen3")->ParameterCount());
}

TEST_F(LlamaTest, ConfigParsesFlagsAndValidates) {
  absl::StatusOr<LlamaConfig> c =
      LlamaConfig::Parse("d=128,layers=3,heads=4,kv_heads=2,ffn=344,vocab=500,ctx=96,tied", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 128);
  EXPECT_EQ(c->num_hidden_layers, 3);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->intermediate_size, 344);
  EXPECT_EQ(c->vocab_size, 500);
  EXPECT_EQ(c->max_position_embeddings, 96);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(*LlamaConfig::FromHuggingFaceJson(c->ToHuggingFaceJson()), *c);

  // An explicit head width: what pruning heads leaves.
  absl::StatusOr<LlamaConfig> narrow = LlamaConfig::Parse("d=64,heads=2,kv_heads=1,head_dim=8", {});
  ASSERT_TRUE(narrow.ok()) << narrow.status();
  EXPECT_EQ(narrow->head_dim(), 8);
  EXPECT_EQ(narrow->ToHuggingFaceJson()["head_dim"], 8);
  EXPECT_EQ(*LlamaConfig::FromHuggingFaceJson(narrow->ToHuggingFaceJson()), *narrow);
  int64_t counted = 0;
  for (const auto& p : LlamaModel(*narrow).parameters()) counted += p.numel();
  EXPECT_EQ(counted, narrow->ParameterCount());
  EXPECT_FALSE(LlamaConfig::Parse("head_dim=7", {}).ok());          // rotary needs even widths
  EXPECT_FALSE(LlamaConfig::Parse("d=100,heads=3", {}).ok());       // heads do not divide d
  EXPECT_FALSE(LlamaConfig::Parse("heads=4,kv_heads=3", {}).ok());  // not a multiple
  EXPECT_FALSE(LlamaConfig::Parse("depth=3", {}).ok());             // unknown key
  EXPECT_FALSE(LlamaConfig::Parse("layers=x", {}).ok());
  EXPECT_FALSE(LlamaConfig::Parse("layers=0", {}).ok());

  // Family words.
  absl::StatusOr<LlamaConfig> q3 = LlamaConfig::Parse("d=64,heads=4,head_dim=24,qwen3", {});
  ASSERT_TRUE(q3.ok()) << q3.status();
  EXPECT_EQ(q3->model_type, "qwen3");
  EXPECT_TRUE(q3->qk_norm);
  EXPECT_EQ(*LlamaConfig::FromHuggingFaceJson(q3->ToHuggingFaceJson()), *q3);
  absl::StatusOr<LlamaConfig> q2 = LlamaConfig::Parse("d=64,heads=4,qwen2", {});
  ASSERT_TRUE(q2.ok()) << q2.status();
  EXPECT_TRUE(q2->qkv_bias);
  EXPECT_EQ(*LlamaConfig::FromHuggingFaceJson(q2->ToHuggingFaceJson()), *q2);
  absl::StatusOr<LlamaConfig> m = LlamaConfig::Parse("d=64,heads=4,mistral,window=5", {});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->sliding_window, 5);
  EXPECT_EQ(*LlamaConfig::FromHuggingFaceJson(m->ToHuggingFaceJson()), *m);
  EXPECT_FALSE(LlamaConfig::Parse("d=64,heads=4,window=5", {}).ok());  // window is Mistral's
}

TEST_F(LlamaTest, StudentFromTeacherLayersCopiesThemAndChecksWidths) {
  LlamaConfig teacher_config = Small();
  teacher_config.num_hidden_layers = 4;
  torch::manual_seed(4);
  LlamaModel teacher(teacher_config);
  LlamaConfig student_config = teacher_config;
  student_config.num_hidden_layers = 2;

  absl::StatusOr<std::shared_ptr<LlamaModel>> s = LlamaFromLayers(teacher, student_config, {});
  ASSERT_TRUE(s.ok()) << s.status();
  auto tp = teacher.named_parameters();
  auto sp = (*s)->named_parameters();
  // Spread evenly: teacher layers 0 and 3.
  EXPECT_TRUE(torch::equal(sp["model.layers.0.self_attn.q_proj.weight"],
                           tp["model.layers.0.self_attn.q_proj.weight"]));
  EXPECT_TRUE(torch::equal(sp["model.layers.1.mlp.down_proj.weight"],
                           tp["model.layers.3.mlp.down_proj.weight"]));
  EXPECT_TRUE(torch::equal(sp["lm_head.weight"], tp["lm_head.weight"]));
  EXPECT_TRUE(torch::equal(sp["model.embed_tokens.weight"], tp["model.embed_tokens.weight"]));
  // A copy, not shared storage.
  EXPECT_NE(sp["lm_head.weight"].data_ptr(), tp["lm_head.weight"].data_ptr());

  s = LlamaFromLayers(teacher, student_config, {2, 1});
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(torch::equal((*s)->named_parameters()["model.layers.0.mlp.up_proj.weight"],
                           tp["model.layers.2.mlp.up_proj.weight"]));

  EXPECT_THAT(LlamaFromLayers(teacher, student_config, {0, 4}).status().message(),
              HasSubstr("teacher layer 4 does not exist"));
  EXPECT_FALSE(LlamaFromLayers(teacher, student_config, {0}).ok());
  LlamaConfig narrow = student_config;
  narrow.hidden_size = 32;
  narrow.intermediate_size = 86;
  EXPECT_THAT(LlamaFromLayers(teacher, narrow, {}).status().message(), HasSubstr("hidden_size"));
  LlamaConfig qwen3 = student_config;
  qwen3.model_type = "qwen3";
  qwen3.qk_norm = true;
  EXPECT_THAT(LlamaFromLayers(teacher, qwen3, {}).status().message(),
              HasSubstr("cannot initialise a qwen3 student from a llama teacher"));
}

TEST_F(LlamaTest, HiddenStatesAreTheResidualStream) {
  torch::manual_seed(6);
  LlamaModel model(Small());
  model.eval();
  torch::NoGradGuard no_grad;
  HiddenStates hidden;
  const torch::Tensor logits =
      model.ForwardWithHidden(Tokens(kBatch), {"embed", "block.1", "final_norm"}, &hidden);
  ASSERT_EQ(hidden.size(), 3u);
  EXPECT_EQ(hidden["block.1"].sizes(), (std::vector<int64_t>{2, 9, 64}));
  EXPECT_TRUE(
      torch::allclose(logits, torch::matmul(hidden["final_norm"], model.OutputWeight().t())));
  EXPECT_TRUE(torch::allclose(hidden["final_norm"], model.model->norm(hidden["block.1"])));
  EXPECT_EQ(model.HiddenLayers().size(), 4u);
}

}  // namespace
}  // namespace retort::models
