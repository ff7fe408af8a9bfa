// Quantizing students and exporting them as GGUF: scheme parsing, what
// QuantizeLlama / QuantizeClassifier change, the GGUF layout (tensor names,
// the rotary permutation, hyper-parameters, vocabulary) and round trips
// through our own reader for every type. llama.cpp itself reads our files in
// tests/student/llama_cpp_check.sh.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "common/file_util.h"
#include "data/sentencepiece_model.h"
#include "models/block_quant.h"
#include "models/classifier.h"
#include "models/gguf_format.h"
#include "models/llama.h"
#include "student/gguf_export.h"
#include "student/quantize.h"
#include "tests/student/families.h"
#include "tests/tokenizer/small_tokenizer_json.h"
#include "tests/tokenizer/test_json.h"

namespace retort::student {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

TEST(QuantizeOptionsTest, ParsesSchemes) {
  EXPECT_EQ(QuantizeOptions::Parse("int8", 0)->group_size, 0);
  EXPECT_EQ(QuantizeOptions::Parse("int8-g32", 0)->group_size, 32);
  EXPECT_EQ(QuantizeOptions::Parse("int4", 0)->bits, 4);
  EXPECT_EQ(QuantizeOptions::Parse("int4", 0)->group_size, 64);
  EXPECT_EQ(QuantizeOptions::Parse("int4", 128)->group_size, 128);
  EXPECT_EQ(QuantizeOptions::Parse("q4-g32", 0)->Describe(), "int4 g32");
  EXPECT_THAT(QuantizeOptions::Parse("int3", 0).status().message(), HasSubstr("not a scheme"));
  EXPECT_THAT(QuantizeOptions::Parse("int4-gx", 0).status().message(), HasSubstr("positive"));
}

// Protobuf wire bytes of a SentencePiece ModelProto: pieces, then a
// normalizer spec with add_dummy_prefix = false.
std::string Varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}
std::string Field(int field, const std::string& payload) {
  return Varint(static_cast<uint64_t>(field) << 3 | 2) + Varint(payload.size()) + payload;
}
std::string SentencePieceModel(int pieces) {
  std::string out;
  for (int i = 0; i < pieces; ++i) {
    const std::string text = i == 0   ? "<unk>"
                             : i == 1 ? "<s>"
                             : i == 2 ? "</s>"
                                      : "p" + std::to_string(i);
    const int type = i == 0 ? 2 : i < 3 ? 3 : 1;
    const float score = -static_cast<float>(i);
    std::string piece = Field(1, text);
    piece += Varint(2 << 3 | 5);
    piece.append(reinterpret_cast<const char*>(&score), 4);
    piece += Varint(3 << 3 | 0) + Varint(type);
    out += Field(1, piece);
  }
  out += Field(2, Field(1, "ignored trainer spec"));
  out += Field(3, Varint(3 << 3 | 0) + Varint(0));
  return out;
}

TEST(SentencePieceModelTest, ReadsPiecesScoresTypesAndTheDummyPrefix) {
  auto vocab = data::ParseSentencePieceModel(SentencePieceModel(5), "m.model");
  ASSERT_TRUE(vocab.ok()) << vocab.status();
  ASSERT_EQ(vocab->pieces.size(), 5u);
  EXPECT_EQ(vocab->pieces[0].text, "<unk>");
  EXPECT_EQ(vocab->pieces[0].type, 2);
  EXPECT_EQ(vocab->pieces[4].text, "p4");
  EXPECT_EQ(vocab->pieces[4].score, -4.0f);
  EXPECT_FALSE(vocab->add_dummy_prefix);
  EXPECT_EQ(vocab->FirstOfType(3), 1);
  const std::string bytes = SentencePieceModel(5);
  EXPECT_THAT(data::ParseSentencePieceModel(bytes.substr(0, 7), "m.model").status().message(),
              HasSubstr("m.model: not a SentencePiece model"));
  EXPECT_FALSE(data::ParseSentencePieceModel("", "m.model").ok());
}

class CompactionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("retort_compact_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    config_.vocab_size = 64;
    config_.hidden_size = 64;
    config_.intermediate_size = 96;  // 96 % 64 != 0: down_proj falls back for int4 g64
    config_.num_hidden_layers = 2;
    config_.num_attention_heads = 4;
    config_.num_key_value_heads = 2;
    config_.max_position_embeddings = 32;
    tokenizer_ = Path("tokenizer.model");
    ASSERT_TRUE(WriteFileAtomically(tokenizer_, SentencePieceModel(64)).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) { return (dir_ / name).string(); }

  std::shared_ptr<models::LlamaModel> Model(bool tied, uint64_t seed = 4) {
    models::LlamaConfig c = config_;
    c.tie_word_embeddings = tied;
    torch::manual_seed(seed);
    auto m = std::make_shared<models::LlamaModel>(c);
    m->eval();
    return m;
  }

  models::LlamaConfig config_;
  fs::path dir_;
  std::string tokenizer_;
};

TEST_F(CompactionTest, QuantizeLlamaQuantizesEveryProjectionAndTheEmbeddings) {
  auto model = Model(/*tied=*/true);
  const torch::Tensor tokens = torch::randint(64, {2, 12}, torch::kInt64);
  const torch::Tensor before = model->forward(tokens);
  auto q = QuantizeOptions::Parse("int4", 0);
  auto report = QuantizeLlama(*q, model.get());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->quantized_tensors, 2 * 7 + 1);
  EXPECT_EQ(report->fallback_tensors, 2);  // the two down_proj (96 columns)
  EXPECT_LT(report->quantized_bytes, report->float_bytes / 4);
  EXPECT_GT(report->max_relative_error, 0);
  EXPECT_LT(report->max_relative_error, 0.2);
  for (auto& [name, p] : model->Projections()) EXPECT_TRUE(p->is_quantized()) << name;
  EXPECT_EQ(model->quantization.bits, 4);
  // Close to the float model, not equal to it.
  const torch::Tensor after = model->forward(tokens);
  EXPECT_FALSE(torch::equal(before, after));
  EXPECT_LT((after - before).abs().max().item<double>(),
            0.1 * before.abs().max().item<double>() + 0.05);
  EXPECT_THAT(QuantizeLlama(*q, model.get()).status().message(), HasSubstr("already quantized"));
}

TEST_F(CompactionTest, QuantizeClassifierReplacesWeightsNotBiases) {
  models::ModelSpec spec;
  spec.hidden = {32};
  auto model = *models::CreateClassifier(spec, 1);
  const torch::Tensor w = model->named_parameters()["fc0.weight"].clone();
  const torch::Tensor b = model->named_parameters()["fc0.bias"].clone();
  auto report = QuantizeClassifier(*QuantizeOptions::Parse("int8", 0), model.get());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->quantized_tensors, 2);
  const torch::Tensor expected = models::QuantizeBlocks(w, 8, 0)->Dequantize();
  EXPECT_TRUE(torch::equal(model->named_parameters()["fc0.weight"], expected));
  EXPECT_TRUE(torch::equal(model->named_parameters()["fc0.bias"], b));
}

// `model`'s weights as llama.cpp will compute with them for `type`: rounded
// to float16, or quantized in 32-blocks with float16 scales.
void RoundLikeGguf(models::LlamaModel& model, models::GgmlType type) {
  torch::NoGradGuard g;
  for (auto& p : model.named_parameters()) {
    torch::Tensor& w = p.value();
    if (w.dim() == 1 || type == models::GgmlType::kF32) continue;
    if (type == models::GgmlType::kF16 || w.size(1) % 32 != 0) {
      w.copy_(w.to(torch::kHalf).to(torch::kFloat32));
      continue;
    }
    models::BlockQuantized q =
        *models::QuantizeBlocks(w, type == models::GgmlType::kQ8_0 ? 8 : 4, 32);
    q.scales = q.scales.to(torch::kHalf).to(torch::kFloat32);
    w.copy_(q.Dequantize());
  }
}

TEST_F(CompactionTest, GgufRoundTripsEveryTypeAndBothHeadLayouts) {
  const torch::Tensor tokens = torch::randint(64, {2, 10}, torch::kInt64);
  for (bool tied : {true, false}) {
    for (models::GgmlType type : {models::GgmlType::kF32, models::GgmlType::kF16,
                                  models::GgmlType::kQ8_0, models::GgmlType::kQ4_0}) {
      auto model = Model(tied);
      const std::string path = Path("m.gguf");
      auto report = ExportLlamaGguf(*model, path, {.type = type, .tokenizer_model = tokenizer_});
      ASSERT_TRUE(report.ok()) << report.status();
      EXPECT_EQ(report->tensors, 1 + 2 * 9 + 1 + (tied ? 0 : 1));
      auto imported = ImportLlamaGguf(path);
      ASSERT_TRUE(imported.ok()) << imported.status();
      EXPECT_EQ((*imported)->config(), model->config());
      RoundLikeGguf(*model, type);
      EXPECT_TRUE(torch::allclose((*imported)->forward(tokens), model->forward(tokens), 1e-5, 1e-5))
          << models::GgmlTypeName(type) << (tied ? " tied" : " untied");
    }
  }
}

TEST_F(CompactionTest, GgufHoldsWhatLlamaCppReads) {
  auto model = Model(/*tied=*/false);
  const std::string path = Path("m.gguf");
  auto report = ExportLlamaGguf(
      *model, path,
      {.type = models::GgmlType::kQ8_0, .name = "tiny", .tokenizer_model = tokenizer_});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->fallback_tensors, 0);  // rows of 64 and 96: whole 32-blocks
  const std::string bytes = *ReadFile(path);
  auto file = models::ParseGguf(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->Find("general.architecture")->string, "llama");
  EXPECT_EQ(file->Find("general.name")->string, "tiny");
  EXPECT_EQ(file->Find("general.file_type")->integer, 7);
  EXPECT_EQ(file->Find("llama.attention.head_count")->integer, 4);
  EXPECT_EQ(file->Find("llama.attention.head_count_kv")->integer, 2);
  EXPECT_EQ(file->Find("llama.rope.dimension_count")->integer, 16);
  EXPECT_EQ(file->Find("llama.feed_forward_length")->integer, 96);
  EXPECT_EQ(file->Find("tokenizer.ggml.model")->string, "llama");
  EXPECT_EQ(file->Find("tokenizer.ggml.tokens")->array.size(), 64u);
  EXPECT_EQ(file->Find("tokenizer.ggml.tokens")->array[5].string, "p5");
  EXPECT_EQ(file->Find("tokenizer.ggml.token_type")->array[0].integer, 2);
  EXPECT_EQ(file->Find("tokenizer.ggml.unknown_token_id")->integer, 0);
  EXPECT_EQ(file->Find("tokenizer.ggml.add_space_prefix")->integer, 0);
  std::map<std::string, models::GgufTensorInfo> t;
  for (const auto& info : file->tensors) t[info.name] = info;
  EXPECT_EQ(t.count("output.weight"), 1u);
  EXPECT_EQ(t["blk.1.attn_norm.weight"].type, models::GgmlType::kF32);
  EXPECT_EQ(t["blk.1.ffn_up.weight"].type, models::GgmlType::kQ8_0);
  EXPECT_EQ(t["blk.0.attn_k.weight"].dims, (std::vector<uint64_t>{64, 32}));  // {in, out}
  // The rotary permutation, checked row by row on an F32 export: GGUF row
  // 2i of head h is transformers' row i, row 2i + 1 is row i + head_dim / 2.
  ASSERT_TRUE(
      ExportLlamaGguf(*model, path, {.type = models::GgmlType::kF32, .tokenizer_model = tokenizer_})
          .ok());
  const std::string f32 = *ReadFile(path);
  auto f = models::ParseGguf(f32);
  ASSERT_TRUE(f.ok());
  for (const auto& info : f->tensors) {
    if (info.name != "blk.0.attn_q.weight") continue;
    torch::Tensor g = torch::empty({64, 64});
    std::memcpy(g.data_ptr(), f32.data() + f->data_start + info.offset, info.bytes);
    const torch::Tensor hf =
        model->model->layers[0]->as<models::LlamaDecoderLayer>()->self_attn->q_proj->weight;
    for (int64_t h = 0; h < 4; ++h) {
      for (int64_t i = 0; i < 8; ++i) {
        EXPECT_TRUE(torch::equal(g[h * 16 + 2 * i], hf[h * 16 + i]));
        EXPECT_TRUE(torch::equal(g[h * 16 + 2 * i + 1], hf[h * 16 + i + 8]));
      }
    }
  }
}

TEST_F(CompactionTest, ExportAndImportRefuseBadInput) {
  auto model = Model(true);
  ASSERT_TRUE(WriteFileAtomically(Path("small.model"), SentencePieceModel(10)).ok());
  EXPECT_THAT(ExportLlamaGguf(*model, Path("x.gguf"), {.tokenizer_model = Path("small.model")})
                  .status()
                  .message(),
              HasSubstr("has 10 pieces but the model's vocabulary is 64"));
  EXPECT_THAT(ExportLlamaGguf(*model, Path("x.gguf"), {}).status().message(),
              HasSubstr("tokenizer"));
  EXPECT_THAT(ParseGgufType("q5_k").status().message(), HasSubstr("f32, f16, q8_0 or q4_0"));
  // Another architecture, and a file missing a tensor.
  auto other =
      models::SerializeGguf({{"general.architecture", models::GgufValue::String("gpt2")}}, {});
  ASSERT_TRUE(WriteFileAtomically(Path("gpt2.gguf"), *other).ok());
  EXPECT_EQ(ImportLlamaGguf(Path("gpt2.gguf")).status().code(), absl::StatusCode::kUnimplemented);
  ASSERT_TRUE(ExportLlamaGguf(*model, Path("m.gguf"),
                              {.type = models::GgmlType::kF32, .tokenizer_model = tokenizer_})
                  .ok());
  std::string bytes = *ReadFile(Path("m.gguf"));
  const size_t at = bytes.find("blk.1.ffn_up.weight");
  bytes[at] = 'x';
  ASSERT_TRUE(WriteFileAtomically(Path("m.gguf"), bytes).ok());
  EXPECT_THAT(ImportLlamaGguf(Path("m.gguf")).status().message(),
              HasSubstr("tensor blk.1.ffn_up.weight is missing"));
  EXPECT_THAT(ImportLlamaGguf(Path("absent.gguf")).status().message(), HasSubstr("absent.gguf"));
  // Hyper-parameters that lie about the tensors are refused before anything
  // is allocated for them.
  ASSERT_TRUE(ExportLlamaGguf(*model, Path("m.gguf"),
                              {.type = models::GgmlType::kF32, .tokenizer_model = tokenizer_})
                  .ok());
  const std::string good = *ReadFile(Path("m.gguf"));
  auto patch_u32 = [&](const std::string& key, uint32_t value) {
    std::string b = good;
    const size_t at = b.find(key) + key.size() + 4;  // after the value type
    std::memcpy(b.data() + at, &value, 4);
    EXPECT_TRUE(WriteFileAtomically(Path("lie.gguf"), b).ok());
  };
  patch_u32("llama.block_count", 1000000000u);
  EXPECT_THAT(ImportLlamaGguf(Path("lie.gguf")).status().message(), HasSubstr("llama.block_count"));
  patch_u32("llama.context_length", 1u << 30);
  EXPECT_THAT(ImportLlamaGguf(Path("lie.gguf")).status().message(), HasSubstr("context_length"));
  patch_u32("llama.feed_forward_length", 4096);
  EXPECT_THAT(ImportLlamaGguf(Path("lie.gguf")).status().message(),
              HasSubstr("feed_forward_length"));
  patch_u32("llama.embedding_length", 128);
  EXPECT_THAT(ImportLlamaGguf(Path("lie.gguf")).status().message(), HasSubstr("embedding_length"));
  patch_u32("llama.attention.key_length", 1u << 30);
  EXPECT_THAT(ImportLlamaGguf(Path("lie.gguf")).status().message(), HasSubstr("differ"));
  // Both head widths lie alike: the query matrix's shape gives them away.
  std::string both = good;
  for (const std::string key : {"llama.attention.key_length", "llama.attention.value_length"}) {
    const uint32_t eight = 8;
    std::memcpy(both.data() + both.find(key) + key.size() + 4, &eight, 4);
  }
  ASSERT_TRUE(WriteFileAtomically(Path("lie.gguf"), both).ok());
  EXPECT_THAT(ImportLlamaGguf(Path("lie.gguf")).status().message(), HasSubstr("attn_q"));
}

// Heads narrower than hidden_size / heads (what pruning heads leaves) travel
// as llama.attention.key_length / value_length and come back.
TEST_F(CompactionTest, GgufCarriesAnExplicitHeadWidth) {
  config_.attention_head_dim = 8;  // 4 heads of 8 in a 64-wide stream
  auto model = Model(/*tied=*/false);
  ASSERT_EQ(
      model->model->layers[0]->as<models::LlamaDecoderLayer>()->self_attn->q_proj->weight.size(0),
      32);
  const std::string path = Path("narrow.gguf");
  ASSERT_TRUE(
      ExportLlamaGguf(*model, path, {.type = models::GgmlType::kF32, .tokenizer_model = tokenizer_})
          .ok());
  auto file = models::ParseGguf(*ReadFile(path));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->Find("llama.attention.key_length")->integer, 8);
  EXPECT_EQ(file->Find("llama.attention.value_length")->integer, 8);
  EXPECT_EQ(file->Find("llama.rope.dimension_count")->integer, 8);
  auto imported = ImportLlamaGguf(path);
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ((*imported)->config(), model->config());
  EXPECT_EQ((*imported)->config().head_dim(), 8);
  const torch::Tensor tokens = torch::randint(64, {2, 10}, torch::kInt64);
  EXPECT_TRUE(torch::allclose((*imported)->forward(tokens), model->forward(tokens), 1e-5, 1e-5));
}

// GGUF's tensors of `file` by name.
std::map<std::string, models::GgufTensorInfo> TensorsOf(const models::GgufFile& file) {
  std::map<std::string, models::GgufTensorInfo> t;
  for (const auto& info : file.tensors) t[info.name] = info;
  return t;
}

// An F32 tensor of `bytes` (a whole GGUF file) as a float tensor of `shape`.
torch::Tensor F32Tensor(const std::string& bytes, const models::GgufFile& file,
                        const models::GgufTensorInfo& info, std::vector<int64_t> shape) {
  torch::Tensor t = torch::empty(shape, torch::kFloat32);
  EXPECT_EQ(info.type, models::GgmlType::kF32) << info.name;
  EXPECT_EQ(static_cast<int64_t>(info.bytes), t.nbytes()) << info.name;
  std::memcpy(t.data_ptr(), bytes.data() + file.data_start + info.offset, t.nbytes());
  return t;
}

// Qwen2 and Qwen3 go out in llama.cpp's own architectures for them, with
// their biases and q/k norms, rows as transformers holds them (llama.cpp's
// qwen models rotate halves, as transformers does); our reader brings back
// the same model for every type.
TEST_F(CompactionTest, GgufWritesQwen2AndQwen3InTheirArchitectures) {
  const torch::Tensor tokens = torch::randint(64, {2, 10}, torch::kInt64);
  for (const std::string family : {"qwen2", "qwen3"}) {
    const models::LlamaConfig base = config_;
    config_ = testing::WithFamily(base, family);
    auto model = Model(/*tied=*/false);
    testing::PerturbBiasesAndNorms(*model);
    config_ = base;
    const models::LlamaConfig& c = model->config();
    const std::string path = Path(family + ".gguf");
    auto report = ExportLlamaGguf(*model, path,
                                  {.type = models::GgmlType::kF32, .tokenizer_model = tokenizer_});
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->layout.architecture, family);
    EXPECT_TRUE(report->layout.note.empty());
    EXPECT_EQ(report->tensors, 1 + 2 * (9 + (family == "qwen2" ? 3 : 2)) + 1 + 1);
    const std::string bytes = *ReadFile(path);
    auto file = models::ParseGguf(bytes);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ(file->Find("general.architecture")->string, family);
    EXPECT_EQ(file->Find(family + ".block_count")->integer, 2);
    EXPECT_EQ(file->Find(family + ".attention.key_length")->integer, c.head_dim());
    EXPECT_EQ(file->Find(family + ".rope.dimension_count")->integer, c.head_dim());
    EXPECT_EQ(file->Find("llama.block_count"), nullptr);
    auto t = TensorsOf(*file);
    auto* attn = model->model->layers[1]->as<models::LlamaDecoderLayer>()->self_attn.get();
    const int64_t q_rows = c.num_attention_heads * c.head_dim();
    EXPECT_TRUE(torch::equal(F32Tensor(bytes, *file, t["blk.1.attn_q.weight"], {q_rows, 64}),
                             attn->q_proj->weight));
    if (family == "qwen2") {
      EXPECT_TRUE(torch::equal(F32Tensor(bytes, *file, t["blk.1.attn_q.bias"], {q_rows}),
                               attn->q_proj->bias));
      EXPECT_TRUE(
          torch::equal(F32Tensor(bytes, *file, t["blk.1.attn_v.bias"], {32}), attn->v_proj->bias));
      EXPECT_EQ(t.count("blk.1.attn_q_norm.weight"), 0u);
    } else {
      EXPECT_TRUE(
          torch::equal(F32Tensor(bytes, *file, t["blk.1.attn_k_norm.weight"], {c.head_dim()}),
                       attn->k_norm->weight));
      EXPECT_EQ(t.count("blk.1.attn_q.bias"), 0u);
    }
    for (models::GgmlType type : {models::GgmlType::kF32, models::GgmlType::kF16,
                                  models::GgmlType::kQ8_0, models::GgmlType::kQ4_0}) {
      // The same weights, rounded as the file stores them.
      config_ = testing::WithFamily(base, family);
      auto copy = Model(false);
      config_ = base;
      {
        torch::NoGradGuard g;
        auto from = model->named_parameters();
        for (auto& p : copy->named_parameters()) p.value().copy_(from[p.key()]);
      }
      ASSERT_TRUE(ExportLlamaGguf(*copy, path, {.type = type, .tokenizer_model = tokenizer_}).ok());
      auto imported = ImportLlamaGguf(path);
      ASSERT_TRUE(imported.ok()) << imported.status();
      EXPECT_EQ((*imported)->config(), c) << family;
      RoundLikeGguf(*copy, type);
      EXPECT_TRUE(torch::allclose((*imported)->forward(tokens), copy->forward(tokens), 1e-5, 1e-5))
          << family << " " << models::GgmlTypeName(type);
    }
  }
}

// Mistral goes out as llama.cpp's converter writes it, in the llama
// architecture, which has no sliding window: the file states the window as
// its context length, within which full attention computes the same.
TEST_F(CompactionTest, GgufWritesMistralAsLlamaWithinItsWindow) {
  config_ = testing::WithFamily(config_, "mistral");
  auto model = Model(/*tied=*/true);
  auto report = ExportLlamaGguf(*model, Path("m.gguf"),
                                {.type = models::GgmlType::kF32, .tokenizer_model = tokenizer_});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->layout.architecture, "llama");
  EXPECT_EQ(report->layout.context_length, 4);
  EXPECT_THAT(report->layout.note, HasSubstr("sliding window"));
  auto file = models::ParseGguf(*ReadFile(Path("m.gguf")));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->Find("llama.context_length")->integer, 4);
  auto imported = ImportLlamaGguf(Path("m.gguf"));
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ((*imported)->config().model_type, "llama");
  const torch::Tensor window = torch::randint(64, {2, 4}, torch::kInt64);
  EXPECT_TRUE(torch::allclose((*imported)->forward(window), model->forward(window), 1e-5, 1e-5));
  // A window no shorter than the context never binds: the whole context.
  config_.sliding_window = 32;
  report = ExportLlamaGguf(*Model(true), Path("m.gguf"), {.tokenizer_model = tokenizer_});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->layout.context_length, 32);
  EXPECT_TRUE(report->layout.note.empty());
}

// Llama 3's rope scaling travels as llama.cpp's rope_freqs.weight: the
// divisor of each rotary frequency. Checked against the model's own rotary
// table: the angle at position 1 is the scaled frequency itself.
TEST_F(CompactionTest, GgufCarriesLlama3RopeScalingAsFrequencyDivisors) {
  config_ = testing::WithFamily(config_, "llama3");
  auto model = Model(/*tied=*/false);
  auto report = ExportLlamaGguf(*model, Path("m.gguf"),
                                {.type = models::GgmlType::kQ8_0, .tokenizer_model = tokenizer_});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->layout.architecture, "llama");
  const std::string bytes = *ReadFile(Path("m.gguf"));
  auto file = models::ParseGguf(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  auto t = TensorsOf(*file);
  ASSERT_EQ(t.count("rope_freqs.weight"), 1u);
  const int64_t half = config_.head_dim() / 2;
  const torch::Tensor divisors = F32Tensor(bytes, *file, t["rope_freqs.weight"], {half});
  torch::Tensor cos, sin;
  models::RotaryTables(config_, &cos, &sin);
  int64_t scaled = 0;
  for (int64_t i = 0; i < half; ++i) {
    const double base = std::pow(config_.rope_theta, -2.0 * i / config_.head_dim());
    const double angle = std::atan2(sin[1][i].item<double>(), cos[1][i].item<double>());
    EXPECT_NEAR(base / divisors[i].item<double>(), angle, 1e-6) << i;
    if (divisors[i].item<double>() > 1) ++scaled;
  }
  EXPECT_GT(scaled, 0);
  EXPECT_EQ(ImportLlamaGguf(Path("m.gguf")).status().code(), absl::StatusCode::kUnimplemented);
}

// What llama.cpp's architectures cannot hold is refused, naming the family
// and the feature.
TEST_F(CompactionTest, GgufRefusesWhatLlamaCppCannotRun) {
  config_ = testing::WithFamily(config_, "qwen2");
  config_.attention_head_dim = 8;  // 4 heads of 8 in a 64-wide stream (pruned heads)
  auto status =
      ExportLlamaGguf(*Model(false), Path("x.gguf"), {.tokenizer_model = tokenizer_}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(status.message(), HasSubstr("qwen2"));
  EXPECT_THAT(status.message(), HasSubstr("4 heads of 8 in a 64-wide stream"));
  EXPECT_FALSE(fs::exists(Path("x.gguf")));
  models::LlamaConfig c = testing::WithFamily(config_, "qwen3");
  c.qk_norm = false;
  EXPECT_THAT(GgufLayoutFor(c).status().message(), HasSubstr("without q/k norms"));
  c = testing::WithFamily(config_, "llama3");
  c.model_type = "qwen3";
  c.qk_norm = true;
  EXPECT_THAT(GgufLayoutFor(c).status().message(), HasSubstr("llama3 rope scaling"));
  c = config_;
  c.model_type = "llama";
  c.qkv_bias = true;
  EXPECT_THAT(GgufLayoutFor(c).status().message(), HasSubstr("a llama model with q/k/v biases"));
}

// GPT-2's byte-level alphabet: byte b as the UTF-8 of its stand-in character.
std::string ByteLevelChar(int b) {
  static const std::vector<int> code_points = [] {
    std::vector<int> out;
    int n = 0;
    for (int c = 0; c < 256; ++c) {
      const bool printable = (c >= 33 && c <= 126) || (c >= 0xa1 && c <= 0xac) || c >= 0xae;
      out.push_back(printable ? c : 256 + n++);
    }
    return out;
  }();
  const int cp = code_points[static_cast<size_t>(b)];
  std::string utf8;
  if (cp < 0x80) {
    utf8 += static_cast<char>(cp);
  } else {
    utf8 += static_cast<char>(0xc0 | (cp >> 6));
    utf8 += static_cast<char>(0x80 | (cp & 0x3f));
  }
  return utf8;
}

// A Qwen2-style byte-level BPE tokenizer.json: the 256 byte characters,
// three merges, <|endoftext|> as a special added token (id 259), NFC and
// Qwen2's published regex split before ByteLevel (or `pattern`; or
// `pre_tokenizer` instead), `model_extra` merged into the model.
std::string Qwen2StyleTokenizerJson(const std::string& pattern,
                                    const nlohmann::json& model_extra = nlohmann::json::object(),
                                    const nlohmann::json& pre_tokenizer = nullptr) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteLevelChar(b)] = b;
  const std::string space = ByteLevelChar(' ');
  vocab[space + "t"] = 256;
  vocab["he"] = 257;
  vocab[space + "the"] = 258;
  const nlohmann::json merges = nlohmann::json::array({space + " t", "h e", space + "t he"});
  const nlohmann::json extra = {{"added_tokens",
                                 {{{"id", 259},
                                   {"content", "<|endoftext|>"},
                                   {"single_word", false},
                                   {"lstrip", false},
                                   {"rstrip", false},
                                   {"normalized", false},
                                   {"special", true}}}},
                                {"normalizer", {{"type", "NFC"}}},
                                {"pre_tokenizer",
                                 {{"type", "Sequence"},
                                  {"pretokenizers",
                                   {{{"type", "Split"},
                                     {"pattern", {{"Regex", pattern}}},
                                     {"behavior", "Isolated"},
                                     {"invert", false}},
                                    {{"type", "ByteLevel"},
                                     {"add_prefix_space", false},
                                     {"trim_offsets", false},
                                     {"use_regex", false}}}}}},
                                {"decoder",
                                 {{"type", "ByteLevel"},
                                  {"add_prefix_space", true},
                                  {"trim_offsets", true},
                                  {"use_regex", true}}}};
  nlohmann::json fields = extra;
  if (!pre_tokenizer.is_null()) fields["pre_tokenizer"] = pre_tokenizer;
  return tokenizer::testing::TokenizerJson(
      tokenizer::testing::BpeModelJson(vocab, merges, model_extra), fields);
}

constexpr char kQwen2Regex[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A byte-level BPE tokenizer.json goes out as llama.cpp's gpt2 vocabulary:
// tokens by id (the model's rows past the tokenizer as [PAD<id>], unused),
// merges as "a b", the added token as a control token, the pre-tokenizer by
// the name llama.cpp knows; what llama.cpp would tokenize differently is
// refused naming the part.
TEST_F(CompactionTest, GgufCarriesAByteLevelBpeTokenizerJson) {
  config_ = testing::WithFamily(config_, "qwen2");
  config_.vocab_size = 264;  // the tokenizer's 260 ids, padded as Qwen pads
  auto model = Model(/*tied=*/true);
  const std::string json = Path("tokenizer.json");
  ASSERT_TRUE(WriteFileAtomically(json, Qwen2StyleTokenizerJson(kQwen2Regex)).ok());
  auto report = ExportLlamaGguf(*model, Path("q.gguf"), {.tokenizer_model = json});
  ASSERT_TRUE(report.ok()) << report.status();
  auto file = models::ParseGguf(*ReadFile(Path("q.gguf")));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->Find("tokenizer.ggml.model")->string, "gpt2");
  EXPECT_EQ(file->Find("tokenizer.ggml.pre")->string, "qwen2");
  const auto& tokens = file->Find("tokenizer.ggml.tokens")->array;
  const auto& types = file->Find("tokenizer.ggml.token_type")->array;
  ASSERT_EQ(tokens.size(), 264u);
  ASSERT_EQ(types.size(), 264u);
  EXPECT_EQ(tokens[0].string, ByteLevelChar(0));
  EXPECT_EQ(tokens['a'].string, "a");
  EXPECT_EQ(tokens[258].string, ByteLevelChar(' ') + "the");
  EXPECT_EQ(types[258].integer, 1);  // normal
  EXPECT_EQ(tokens[259].string, "<|endoftext|>");
  EXPECT_EQ(types[259].integer, 3);  // control
  EXPECT_EQ(tokens[263].string, "[PAD263]");
  EXPECT_EQ(types[263].integer, 5);  // unused
  const auto& merges = file->Find("tokenizer.ggml.merges")->array;
  ASSERT_EQ(merges.size(), 3u);
  EXPECT_EQ(merges[0].string, ByteLevelChar(' ') + " t");
  EXPECT_EQ(merges[2].string, ByteLevelChar(' ') + "t he");
  EXPECT_EQ(file->Find("tokenizer.ggml.eos_token_id")->integer, 259);
  EXPECT_EQ(file->Find("tokenizer.ggml.bos_token_id"), nullptr);  // Qwen has none
  EXPECT_EQ(file->Find("tokenizer.ggml.add_bos_token")->integer, 0);
  EXPECT_EQ(file->Find("tokenizer.ggml.scores"), nullptr);

  // Refused, naming what differs.
  std::string other_regex = kQwen2Regex;
  other_regex.replace(other_regex.find(R"(\p{N}|)"), 6, R"(\p{N}{1,2}|)");
  ASSERT_TRUE(WriteFileAtomically(json, Qwen2StyleTokenizerJson(other_regex)).ok());
  auto status = ExportLlamaGguf(*model, Path("x.gguf"), {.tokenizer_model = json}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(status.message(), HasSubstr("pre_tokenizer"));
  ASSERT_TRUE(WriteFileAtomically(json, tokenizer::testing::SmallByteFallbackTokenizerJson()).ok());
  status = ExportLlamaGguf(*model, Path("x.gguf"), {.tokenizer_model = json}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(status.message(), HasSubstr("byte_fallback"));
  ASSERT_TRUE(WriteFileAtomically(json, Qwen2StyleTokenizerJson(kQwen2Regex)).ok());
  config_.vocab_size = 258;
  EXPECT_THAT(
      ExportLlamaGguf(*Model(true), Path("x.gguf"), {.tokenizer_model = json}).status().message(),
      HasSubstr("token ids up to 259 but the model's vocabulary is 258"));
  EXPECT_FALSE(fs::exists(Path("x.gguf")));
}

// The other pre-tokenizers llama.cpp knows by name: Llama 3's regex (with
// ignore_merges, which llama.cpp's llama-bpe does) and GPT-2's ByteLevel.
TEST_F(CompactionTest, GgufNamesLlama3AndGpt2PreTokenizers) {
  config_.vocab_size = 260;
  auto model = Model(/*tied=*/true);
  const std::string json = Path("tokenizer.json");
  auto pre_of = [&]() -> std::string {
    auto report = ExportLlamaGguf(*model, Path("t.gguf"), {.tokenizer_model = json});
    if (!report.ok()) return std::string(report.status().message());
    auto file = models::ParseGguf(*ReadFile(Path("t.gguf")));
    return file.ok() ? file->Find("tokenizer.ggml.pre")->string : "unreadable";
  };
  const std::string llama3 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  ASSERT_TRUE(
      WriteFileAtomically(json, Qwen2StyleTokenizerJson(llama3, {{"ignore_merges", true}})).ok());
  EXPECT_EQ(pre_of(), "llama-bpe");
  ASSERT_TRUE(WriteFileAtomically(json, Qwen2StyleTokenizerJson(llama3)).ok());
  EXPECT_THAT(pre_of(), HasSubstr("ignore_merges is false"));
  const nlohmann::json gpt2 = {{"type", "ByteLevel"},
                               {"add_prefix_space", false},
                               {"trim_offsets", true},
                               {"use_regex", true}};
  ASSERT_TRUE(
      WriteFileAtomically(json, Qwen2StyleTokenizerJson("", nlohmann::json::object(), gpt2)).ok());
  EXPECT_EQ(pre_of(), "gpt-2");
  nlohmann::json prefixed = gpt2;
  prefixed["add_prefix_space"] = true;
  ASSERT_TRUE(
      WriteFileAtomically(json, Qwen2StyleTokenizerJson("", nlohmann::json::object(), prefixed))
          .ok());
  EXPECT_THAT(pre_of(), HasSubstr("pre_tokenizer"));
}

}  // namespace
}  // namespace retort::student
