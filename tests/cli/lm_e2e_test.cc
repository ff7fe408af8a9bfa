// End-to-end tests of the language-model path with real processes on
// 127.0.0.1: `retort data prepare` on a text file, a teacher trained with
// `retort lm train`, served by `retort teacher serve` (a Llama directory),
// a student distilled from it over gRPC with top-k targets, resumed after a
// stop bit for bit, evaluated against the teacher, and sampled from.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/free_port.h"
#include "common/sha256.h"
#include "common/subprocess.h"
#include "tests/cli/cli_test_util.h"
#include "tests/tokenizer/small_tokenizer_json.h"

namespace retort {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// Sentences from a small grammar: learnable, and varied enough for a
// 320-piece tokenizer.
std::string GrammarText(int lines) {
  static const char* kSubjects[] = {"the king",    "a shepherd", "the people",   "his servant",
                                    "the prophet", "a woman",    "the children", "my brother"};
  static const char* kVerbs[] = {"went up to",    "spake unto", "looked upon", "came into",
                                 "departed from", "dwelt in",   "blessed",     "remembered"};
  static const char* kObjects[] = {"the city",       "the mountain",     "the temple", "jerusalem",
                                   "the wilderness", "the house of god", "the river",  "egypt"};
  std::mt19937 rng(5);
  std::string text;
  for (int i = 0; i < lines; ++i) {
    absl::StrAppend(&text, kSubjects[rng() % 8], " ", kVerbs[rng() % 8], " ", kObjects[rng() % 8],
                    rng() % 3 == 0 ? ", and it was good." : ".", "\n");
  }
  return text;
}

class LmE2ETest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ =
        new fs::path(fs::temp_directory_path() / ("retort_lm_e2e_" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    ASSERT_TRUE(WriteFileAtomically(Path("text.txt"), GrammarText(3000)).ok());
    prepare_ = new clitest::Result(
        Run("data prepare --text=" + Path("text.txt") +
            " --vocab_size=320 --validation_fraction=0.1 --out_dir=" + Path("corpus")));
    if (!Unavailable()) {
      ASSERT_EQ(prepare_->exit_code, 0) << prepare_->err;
      const clitest::Result teacher = Run("lm train " + Data() +
                                          " --model=d=64,layers=2,heads=4,ffn=128 --steps=60 "
                                          "--lr=3e-3 --out_dir=" +
                                          Path("teacher"));
      ASSERT_EQ(teacher.exit_code, 0) << teacher.err;
    }
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete prepare_;
  }
  void SetUp() override {
    if (Unavailable()) GTEST_SKIP() << "no SentencePiece in this build: " << prepare_->err;
  }

  // A build without SentencePiece (a sanitizer build) cannot tokenize.
  static bool Unavailable() {
    return prepare_->exit_code != 0 &&
           (absl::StrContains(prepare_->err, "SentencePiece is not available") ||
            absl::StrContains(prepare_->err, "has no SentencePiece"));
  }
  static std::string Path(const std::string& name) { return (*dir_ / name).string(); }
  static std::string Data() {
    return "--data=" + Path("corpus") + " --seq_len=32 --batch_size=8 --threads=1 --seed=3";
  }
  // Data() less --seed, which slicing (deterministic, the first sequences)
  // does not take.
  static std::string SliceData() {
    return "--data=" + Path("corpus") + " --seq_len=32 --batch_size=8 --threads=1";
  }
  static clitest::Result Run(const std::string& args) {
    return clitest::RunBinary(RETORT_BINARY, args, *dir_);
  }
  static nlohmann::json Json(const std::string& path) {
    absl::StatusOr<std::string> text = ReadFile(path);
    EXPECT_TRUE(text.ok()) << text.status();
    return nlohmann::json::parse(text.value_or("{}"), nullptr, false);
  }

  struct Server {
    std::unique_ptr<Subprocess> process;
    std::string address;
  };
  static Server Serve(const std::string& name) {
    Subprocess::Options o;
    o.argv = {RETORT_BINARY,
              "teacher",
              "serve",
              "--checkpoint=" + Path("teacher/model"),
              "--listen=127.0.0.1:0",
              "--port_file=" + Path(name + ".port"),
              "--deterministic",
              "--threads=1"};
    o.stderr_path = Path(name + ".log");
    absl::StatusOr<std::unique_ptr<Subprocess>> p = Subprocess::Start(o);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return {};
    absl::StatusOr<std::string> port =
        WaitForFile(Path(name + ".port"), p->get(), absl::Seconds(60));
    EXPECT_TRUE(port.ok()) << port.status() << ReadFile(Path(name + ".log")).value_or("");
    if (!port.ok()) return {};
    return {*std::move(p), "127.0.0.1:" + *port};
  }

  static std::string StudentArgs(const std::string& teachers, const std::string& out) {
    return "lm train " + Data() + " --model=d=32,layers=1,heads=2,ffn=64 --steps=40 --lr=3e-3 " +
           "--teachers=" + teachers + " --top_k=16 --temperature=1 --alpha=0.5 " +
           "--log_every_steps=1 --checkpoint_every_steps=10 --out_dir=" + Path(out);
  }

  static fs::path* dir_;
  static clitest::Result* prepare_;
};
fs::path* LmE2ETest::dir_ = nullptr;
clitest::Result* LmE2ETest::prepare_ = nullptr;

TEST_F(LmE2ETest, PrepareWritesShardsAndReusesThem) {
  const nlohmann::json corpus = nlohmann::json::parse(prepare_->out, nullptr, false);
  ASSERT_TRUE(corpus.is_object()) << prepare_->out;
  EXPECT_EQ(corpus["tokenizer"]["vocab_size"], 320);
  EXPECT_EQ(corpus["reused"], false);
  const int64_t train = corpus["train"]["tokens"].get<int64_t>();
  const int64_t valid = corpus["valid"]["tokens"].get<int64_t>();
  EXPECT_GT(valid, 0);
  EXPECT_GT(train, 5 * valid);  // a 10% validation split
  EXPECT_TRUE(PathExists(Path("corpus/corpus.json")));
  for (const char* f : {"tokenizer.model", "train.tokens", "valid.tokens"}) {
    EXPECT_TRUE(PathExists(Path("corpus/") + f)) << f;
  }
  const clitest::Result again =
      Run("data prepare --text=" + Path("text.txt") +
          " --vocab_size=320 --validation_fraction=0.1 --out_dir=" + Path("corpus"));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("\"reused\": true"));
}

// A corpus tokenized with a tokenizer.json trains a model whose export
// carries that file; a teacher whose tokenizer is not the data's is refused
// with both hashes, even when the vocabularies have the same size.
TEST_F(LmE2ETest, TokenizerJsonCorpusTrainsExportsAndRefusesAnotherTokenizersTeacher) {
  const std::string json = tokenizer::testing::SmallByteFallbackTokenizerJson(400);
  ASSERT_TRUE(WriteFileAtomically(Path("hf_tokenizer.json"), json).ok());
  const clitest::Result prepared =
      Run("data prepare --text=" + Path("text.txt") + " --tokenizer=" + Path("hf_tokenizer.json") +
          " --validation_fraction=0.1 --out_dir=" + Path("corpus_hf"));
  ASSERT_EQ(prepared.exit_code, 0) << prepared.err;
  const nlohmann::json corpus = nlohmann::json::parse(prepared.out, nullptr, false);
  EXPECT_EQ(corpus["tokenizer"]["sha256"], Sha256Hex(json)) << prepared.out;
  EXPECT_EQ(corpus["tokenizer"]["vocab_size"], 400);
  EXPECT_TRUE(PathExists(Path("corpus_hf/tokenizer.json")));

  const std::string args =
      " --seq_len=32 --batch_size=8 --threads=1 --seed=3 "
      "--model=d=32,layers=1,heads=2,ffn=64 --steps=5 ";
  const clitest::Result trained =
      Run("lm train --data=" + Path("corpus_hf") + args + "--out_dir=" + Path("hf_teacher"));
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  EXPECT_EQ(ReadFile(Path("hf_teacher/model/tokenizer.json")).value_or(""), json);
  EXPECT_FALSE(PathExists(Path("hf_teacher/model/tokenizer.model")));
  const clitest::Result generated = Run("generate --checkpoint=" + Path("hf_teacher/model") +
                                        " --prompt=the --max_new_tokens=4 --threads=1");
  ASSERT_EQ(generated.exit_code, 0) << generated.err;
  EXPECT_TRUE(absl::StartsWith(generated.out, "the")) << generated.out;

  // Data from another tokenizer of the same size (one unused token renamed).
  std::string other = json;
  const size_t at = other.find("<unused399>");
  ASSERT_NE(at, std::string::npos);
  other.replace(at, 11, "<spare0399>");
  ASSERT_TRUE(WriteFileAtomically(Path("other_tokenizer.json"), other).ok());
  const clitest::Result other_prepared = Run(
      "data prepare --text=" + Path("text.txt") + " --tokenizer=" + Path("other_tokenizer.json") +
      " --validation_fraction=0.1 --out_dir=" + Path("corpus_other"));
  ASSERT_EQ(other_prepared.exit_code, 0) << other_prepared.err;
  const clitest::Result refused =
      Run("lm train --data=" + Path("corpus_other") + args +
          "--teacher=" + Path("hf_teacher/model") + " --out_dir=" + Path("hf_refused"));
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("tokenizes differently"));
  EXPECT_THAT(refused.err, HasSubstr(Sha256Hex(json)));   // the teacher's
  EXPECT_THAT(refused.err, HasSubstr(Sha256Hex(other)));  // the data's

  // The same teacher served: the pool's fingerprint carries the hash.
  Subprocess::Options o;
  o.argv = {RETORT_BINARY,
            "teacher",
            "serve",
            "--checkpoint=" + Path("hf_teacher/model"),
            "--listen=127.0.0.1:0",
            "--port_file=" + Path("hf.port"),
            "--threads=1"};
  o.stderr_path = Path("hf_serve.log");
  absl::StatusOr<std::unique_ptr<Subprocess>> server = Subprocess::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<std::string> port = WaitForFile(Path("hf.port"), server->get(), absl::Seconds(60));
  ASSERT_TRUE(port.ok()) << port.status() << ReadFile(Path("hf_serve.log")).value_or("");
  const clitest::Result pool_refused =
      Run("lm train --data=" + Path("corpus_other") + args + "--teachers=127.0.0.1:" + *port +
          " --out_dir=" + Path("hf_pool_refused"));
  EXPECT_NE(pool_refused.exit_code, 0);
  EXPECT_THAT(pool_refused.err, HasSubstr("tokenizes differently"));
  EXPECT_THAT(pool_refused.err, HasSubstr(Sha256Hex(json)));
  EXPECT_THAT(pool_refused.err, HasSubstr(Sha256Hex(other)));
  ASSERT_TRUE((*server)->Signal(SIGTERM).ok());
  EXPECT_TRUE((*server)->Wait(absl::Seconds(60)).ok());

  const clitest::Result not_a_tokenizer =
      Run("data prepare --text=" + Path("text.txt") + " --tokenizer=" + Path("text.txt") +
          " --out_dir=" + Path("corpus_bad"));
  EXPECT_EQ(not_a_tokenizer.exit_code, 1);
  EXPECT_THAT(not_a_tokenizer.err, HasSubstr("is neither a Hugging Face tokenizer.json"));
}

// Qwen3 and Qwen2 students train and distill like Llama ones; a Qwen3
// teacher is served from bf16 shards in its file's dtype; both families
// prune, slice, quantize and export to GGUF, and what llama.cpp cannot hold
// is refused by name.
TEST_F(LmE2ETest, OtherFamiliesTrainDistillServeFromShardsPruneSliceAndExport) {
  const std::string common =
      " --seq_len=32 --batch_size=8 --threads=1 --seed=3 --data=" + Path("corpus") +
      " --steps=8 --lr=3e-3 ";
  clitest::Result r = Run("lm train" + common +
                          "--model=d=64,layers=2,heads=4,kv_heads=2,head_dim=24,ffn=96,qwen3 "
                          "--out_dir=" +
                          Path("qwen3_teacher"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json config = Json(Path("qwen3_teacher/model/config.json"));
  EXPECT_EQ(config["model_type"], "qwen3");
  EXPECT_EQ(config["architectures"][0], "Qwen3ForCausalLM");
  EXPECT_EQ(config["head_dim"], 24);

  // Re-exported in bf16 shards, served with --bf16 (views of the mapped shards).
  r = Run("export --checkpoint=" + Path("qwen3_teacher/model") +
          " --format=safetensors --weights_dtype=bfloat16 --max_shard_bytes=20000 --out=" +
          Path("qwen3_sharded"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("sharded"));
  EXPECT_TRUE(PathExists(Path("qwen3_sharded/model.safetensors.index.json")));
  EXPECT_TRUE(PathExists(Path("qwen3_sharded/tokenizer.model")));
  Subprocess::Options o;
  o.argv = {RETORT_BINARY,
            "teacher",
            "serve",
            "--checkpoint=" + Path("qwen3_sharded"),
            "--bf16",
            "--listen=127.0.0.1:0",
            "--port_file=" + Path("qwen3.port"),
            "--threads=1"};
  o.stderr_path = Path("qwen3_serve.log");
  absl::StatusOr<std::unique_ptr<Subprocess>> server = Subprocess::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<std::string> port =
      WaitForFile(Path("qwen3.port"), server->get(), absl::Seconds(60));
  ASSERT_TRUE(port.ok()) << port.status() << ReadFile(Path("qwen3_serve.log")).value_or("");

  // A Qwen2 student distilled from it over the wire.
  r = Run("lm train" + common + "--model=d=32,layers=1,heads=2,ffn=64,qwen2 --teachers=127.0.0.1:" +
          *port + " --top_k=16 --out_dir=" + Path("qwen2_student"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Json(Path("qwen2_student/model/config.json"))["model_type"], "qwen2");
  ASSERT_TRUE((*server)->Signal(SIGTERM).ok());
  EXPECT_TRUE((*server)->Wait(absl::Seconds(60)).ok());

  // GGUF in llama.cpp's qwen2 architecture (tests/student/llama_cpp_check.sh
  // has llama.cpp run such files).
  r = Run("export --checkpoint=" + Path("qwen2_student/model") +
          " --format=gguf --out=" + Path("qwen2.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("architecture qwen2"));
  // Structured pruning and SliceGPT keep Qwen3's q/k norms; the pruned heads
  // keep their width (head_dim 24), which llama.cpp's qwen3 takes.
  const std::string calibration = " --data=" + Path("corpus") +
                                  " --seq_len=32 --batch_size=8 --eval_sequences=4 "
                                  "--bench_tokens=64 --threads=1 ";
  r = Run("prune --checkpoint=" + Path("qwen3_teacher/model") + calibration +
          "--structured --fraction=0.25 --heads_fraction=0.5 --out_dir=" + Path("qwen3_pruned"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json pruned = Json(Path("qwen3_pruned/config.json"));
  EXPECT_EQ(pruned["model_type"], "qwen3");
  EXPECT_EQ(pruned["num_attention_heads"], 2);
  EXPECT_EQ(pruned["head_dim"], 24);
  r = Run("export --checkpoint=" + Path("qwen3_pruned") +
          " --format=gguf --gguf_type=q8_0 --out=" + Path("qwen3_pruned.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("architecture qwen3"));
  r = Run("slice --checkpoint=" + Path("qwen3_teacher/model") + calibration +
          "--fraction=0.25 --calibration_sequences=16 --out_dir=" + Path("qwen3_sliced"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Json(Path("qwen3_sliced/config.json"))["model_type"], "qwen3");
  r = Run("quantize --checkpoint=" + Path("qwen2_student/model") +
          " --quantize=int4 --bench_tokens=64 --threads=1 --out_dir=" + Path("qwen2_int4"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // What llama.cpp's qwen2 cannot hold is refused naming the family: heads
  // narrower than hidden / heads.
  r = Run("prune --checkpoint=" + Path("qwen2_student/model") + calibration +
          "--structured --fraction=0 --heads_fraction=0.5 --out_dir=" + Path("qwen2_heads"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Run("export --checkpoint=" + Path("qwen2_heads") +
          " --format=gguf --out=" + Path("qwen2_heads.gguf"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("a qwen2 model with heads narrower than hidden_size / heads"));
  EXPECT_FALSE(PathExists(Path("qwen2_heads.gguf")));
}

TEST_F(LmE2ETest, TeacherLearnedAndExportedAHuggingFaceDirectory) {
  const nlohmann::json result = Json(Path("teacher/result.json"));
  // A uniform guess over 320 pieces is perplexity 320; the grammar is far
  // more predictable than that.
  EXPECT_LT(result["final_validation"]["perplexity"].get<double>(), 60.0) << result.dump();
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.model"}) {
    EXPECT_TRUE(PathExists(Path("teacher/model/") + f)) << f;
  }
  EXPECT_EQ(Json(Path("teacher/model/config.json"))["model_type"], "llama");
}

TEST_F(LmE2ETest, DistillsFromAServedTeacherAndResumesBitForBit) {
  Server teacher = Serve("serve_a");
  ASSERT_NE(teacher.process, nullptr);
  const clitest::Result whole = Run(StudentArgs(teacher.address, "student"));
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  const nlohmann::json result = Json(Path("student/result.json"));
  EXPECT_EQ(result["steps"], 40);
  EXPECT_GT(result["final_validation"]["teacher_agreement"].get<double>(), 0.0);

  // Stopped at step 25 (after a checkpoint), resumed from the newest.
  const clitest::Result first =
      Run(StudentArgs(teacher.address, "resumed") + " --stop_after_steps=25");
  EXPECT_NE(first.exit_code, 0);
  EXPECT_THAT(first.err, HasSubstr("stopped after step 25"));
  const clitest::Result second = Run(StudentArgs(teacher.address, "resumed") + " --resume=auto");
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_THAT(second.err, HasSubstr("resumed from"));
  const nlohmann::json resumed = Json(Path("resumed/result.json"));
  EXPECT_EQ(resumed["parameters_sha256"], result["parameters_sha256"]);
  EXPECT_EQ(resumed["resumed_from_step"], 25);

  // Every step is logged once, with the same losses as the whole run.
  auto losses = [](const std::string& path) {
    std::map<int64_t, double> out;
    for (absl::string_view line :
         absl::StrSplit(ReadFile(path).value_or(""), '\n', absl::SkipEmpty())) {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && j.contains("loss") && j.contains("lr")) {
        EXPECT_EQ(out.count(j["step"].get<int64_t>()), 0u) << "step logged twice";
        out[j["step"].get<int64_t>()] = j["loss"].get<double>();
      }
    }
    return out;
  };
  EXPECT_EQ(losses(Path("resumed/metrics.jsonl")), losses(Path("student/metrics.jsonl")));
  EXPECT_EQ(losses(Path("student/metrics.jsonl")).size(), 40u);

  // A resume with other settings is refused and names them.
  const clitest::Result changed =
      Run(StudentArgs(teacher.address, "resumed") + " --resume=auto --top_k=16 --alpha=0.9");
  EXPECT_NE(changed.exit_code, 0);
  EXPECT_THAT(changed.err, HasSubstr("loss"));
  ASSERT_TRUE(teacher.process->Signal(SIGTERM).ok());
  EXPECT_TRUE(teacher.process->Wait(absl::Seconds(60)).ok());
}

TEST_F(LmE2ETest, MatchesResidualStreamsOverTheWireResumesAndRunsAChain) {
  Server teacher = Serve("serve_features");
  ASSERT_NE(teacher.process, nullptr);
  const std::string features = " --feature_weight=1 --feature_loss=cosine --match=s1:t2";
  const clitest::Result whole = Run(StudentArgs(teacher.address, "fm_whole") + features);
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  EXPECT_THAT(ReadFile(Path("fm_whole/metrics.jsonl")).value_or(""), HasSubstr("\"feature\""));
  // The exported student holds no adapter tensor.
  const std::string weights = ReadFile(Path("fm_whole/model/model.safetensors")).value_or("");
  ASSERT_GT(weights.size(), 8u);
  EXPECT_THAT(weights.substr(0, 4096), HasSubstr("model.layers.0.mlp"));
  EXPECT_THAT(weights.substr(0, 4096), Not(HasSubstr("adapter")));
  // Adapters are in the training checkpoints: a resumed run ends bit for bit
  // where the uninterrupted one did.
  EXPECT_NE(Run(StudentArgs(teacher.address, "fm_resumed") + features + " --stop_after_steps=25")
                .exit_code,
            0);
  const clitest::Result second =
      Run(StudentArgs(teacher.address, "fm_resumed") + features + " --resume=auto");
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(Json(Path("fm_resumed/result.json"))["parameters_sha256"],
            Json(Path("fm_whole/result.json"))["parameters_sha256"]);
  // A layer the teacher lacks.
  const clitest::Result bad =
      Run(StudentArgs(teacher.address, "fm_bad") + " --feature_weight=1 --match=s1:t9");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("the teacher has no layer 't9'; its hidden layers are t0=embed"));
  ASSERT_TRUE(teacher.process->Signal(SIGTERM).ok());
  EXPECT_TRUE(teacher.process->Wait(absl::Seconds(60)).ok());

  // teacher -> assistant -> student in one command.
  const clitest::Result chain =
      Run("lm chain " + Data() + " --teacher=" + Path("teacher/model") +
          " --assistant_model=d=48,layers=1,heads=2,ffn=96 --model=d=32,layers=1,heads=2,ffn=64 "
          "--steps=20 --lr=3e-3 --top_k=16 --out_dir=" +
          Path("chain"));
  ASSERT_EQ(chain.exit_code, 0) << chain.err;
  const nlohmann::json summary = Json(Path("chain/chain.json"));
  EXPECT_EQ(summary["assistant"]["steps"], 20);
  EXPECT_EQ(summary["student"]["steps"], 20);
  EXPECT_GT(summary["student"]["final_validation"]["teacher_agreement"].get<double>(), 0.0);
  EXPECT_TRUE(PathExists(Path("chain/student/model/config.json")));
}

TEST_F(LmE2ETest, EvalReportsPerplexityAndAgreementAndGenerateSamples) {
  const clitest::Result eval =
      Run("eval --checkpoint=" + Path("teacher/model") + " " + Data() +
          " --teacher=" + Path("teacher/model") + " --json_out=" + Path("eval.json"));
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  const nlohmann::json j = Json(Path("eval.json"));
  EXPECT_DOUBLE_EQ(j["teacher_agreement"].get<double>(), 1.0);  // the teacher agrees with itself
  EXPECT_GT(j["perplexity"].get<double>(), 1.0);
  EXPECT_THAT(eval.out, HasSubstr("validation perplexity"));

  const clitest::Result gen = Run("generate --checkpoint=" + Path("teacher/model") +
                                  " --prompt='the king' --max_new_tokens=20 --seed=2 --threads=1");
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  EXPECT_THAT(gen.out, ::testing::StartsWith("the king"));
  EXPECT_GT(gen.out.size(), std::string("the king").size() + 5);
  const clitest::Result again =
      Run("generate --checkpoint=" + Path("teacher/model") +
          " --prompt='the king' --max_new_tokens=20 --seed=2 --threads=1");
  EXPECT_EQ(again.out, gen.out);
}

// The compaction commands on the trained teacher: each writes its model and
// a JSON report with the before/after rows, and what it writes loads again.
TEST_F(LmE2ETest, PrunesSlicesQuantizesAndExports) {
  const std::string teacher = " --checkpoint=" + Path("teacher/model") + " ";
  const std::string quick = " --eval_sequences=16 --bench_tokens=256 ";
  clitest::Result r =
      Run("prune" + teacher + Data() + quick +
          "--structured --fraction=0.5 --method=activation --out_dir=" + Path("pruned"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = Json(Path("pruned/prune.json"));
  EXPECT_EQ(j["intermediate_size"].get<int>(), 64);  // 128 neurons, half kept
  EXPECT_LT(j["rows"][1]["parameters"].get<int64_t>(), j["rows"][0]["parameters"].get<int64_t>());
  EXPECT_GT(j["rows"][1]["perplexity"].get<double>(), 1.0);
  EXPECT_THAT(r.out, HasSubstr("perplexity"));
  // The pruned model is an ordinary checkpoint: eval reads it.
  r = Run("eval --checkpoint=" + Path("pruned") + " " + Data());
  EXPECT_EQ(r.exit_code, 0) << r.err;

  r = Run("prune" + teacher + Data() + quick + "--sparsity=0.5 --out_dir=" + Path("sparse"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = Json(Path("sparse/prune.json"));
  EXPECT_LT(j["rows"][1]["nonzero"].get<int64_t>(), j["rows"][0]["nonzero"].get<int64_t>());

  r = Run("slice" + teacher + SliceData() + quick +
          "--fraction=0.25 --multiple_of=8 --calibration_sequences=16 --out_dir=" + Path("sliced"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = Json(Path("sliced/slice.json"));
  EXPECT_EQ(j["width"].get<int>(), 48);
  EXPECT_THAT(r.out, HasSubstr("signal energy kept"));
  r = Run("eval --checkpoint=" + Path("sliced") + " " + Data() +
          " --json_out=" + Path("sliced_eval.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NEAR(Json(Path("sliced_eval.json"))["perplexity"].get<double>(),
              j["rows"][1]["perplexity"].get<double>(),
              0.5 * j["rows"][1]["perplexity"].get<double>());  // all sequences vs 16 of them
  // A sliced model generates like any other.
  r = Run("generate --checkpoint=" + Path("sliced") + " --threads=1 --max_new_tokens=40");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  // Recovery: the sliced model trains on whole, distilled from the model it
  // was cut from, in its own shape (no --model), and stays sliced.
  r = Run("lm train " + Data() + " --init_from=" + Path("sliced") +
          " --teacher=" + Path("teacher/model") +
          " --top_k=16 --alpha=0.5 --steps=6 --lr=1e-3 --out_dir=" + Path("recovered"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Json(Path("recovered/model/config.json"))["retort_slicing"]["width"].get<int>(), 48);
  r = Run("eval --checkpoint=" + Path("recovered/model") + " " + Data());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // The sliced model quantizes like any other (and stays sliced), but no
  // other runtime has its shortcut matrices: export says so.
  r = Run("quantize --checkpoint=" + Path("recovered/model") + " " + Data() + quick +
          "--quantize=int8 --out_dir=" + Path("sliced_int8"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Json(Path("sliced_int8/config.json"))["retort_quantization"]["bits"].get<int>(), 8);
  EXPECT_EQ(Json(Path("sliced_int8/config.json"))["retort_slicing"]["width"].get<int>(), 48);
  j = Json(Path("sliced_int8/quantize.json"));
  EXPECT_LT(j["rows"][1]["bytes"].get<int64_t>() * 2, j["rows"][0]["bytes"].get<int64_t>());
  r = Run("eval --checkpoint=" + Path("sliced_int8") + " " + Data());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Run("export --checkpoint=" + Path("sliced") + " --format=gguf --out=" + Path("x.gguf"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("shortcut"));
  r = Run("lm train " + Data() + " --init_from=" + Path("sliced") +
          " --model=d=64,layers=1,heads=4,ffn=128 --steps=2 --out_dir=" + Path("x"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("leave --model and --init_layers out"));

  // Attention heads: half of the 4 go; heads keep their width (16), and the
  // checkpoint says so (head_dim) for eval, transformers and GGUF.
  r = Run("prune" + teacher + Data() + quick +
          "--structured --fraction=0 --heads_fraction=0.5 --out_dir=" + Path("heads"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = Json(Path("heads/prune.json"));
  EXPECT_EQ(j["num_attention_heads"].get<int>(), 2);
  EXPECT_EQ(Json(Path("heads/config.json"))["head_dim"].get<int>(), 16);
  EXPECT_LT(j["rows"][1]["parameters"].get<int64_t>(), j["rows"][0]["parameters"].get<int64_t>());
  r = Run("eval --checkpoint=" + Path("heads") + " " + Data());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Run("export --checkpoint=" + Path("heads") +
          " --format=gguf --gguf_type=f32 --out=" + Path("heads.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.err;

  r = Run("quantize" + teacher + Data() + quick + "--quantize=int4-g32 --out_dir=" + Path("q4"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = Json(Path("q4/quantize.json"));
  EXPECT_EQ(j["scheme"], "int4 g32");
  EXPECT_LT(j["rows"][1]["bytes"].get<int64_t>() * 4, j["rows"][0]["bytes"].get<int64_t>());
  // The quantized checkpoint generates, and exports as float safetensors
  // and as GGUF.
  r = Run("generate --checkpoint=" + Path("q4") +
          " --prompt='the king' --max_new_tokens=5 --threads=1");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Run("export --checkpoint=" + Path("q4") + " --format=safetensors --out=" + Path("q4_float"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(Json(Path("q4_float/config.json")).contains("retort_quantization"));
  r = Run("export --checkpoint=" + Path("q4") +
          " --format=gguf --gguf_type=q4_0 --out=" + Path("q4.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("GGUF Q4_0"));

  // Bad flags name themselves.
  r = Run("quantize" + teacher + "--quantize=int3 --out_dir=" + Path("x"));
  EXPECT_THAT(r.err, HasSubstr("not a scheme"));
  r = Run("prune" + teacher + "--method=random --out_dir=" + Path("x"));
  EXPECT_THAT(r.err, HasSubstr("magnitude"));
  r = Run("prune" + teacher + "--method=activation --out_dir=" + Path("x"));
  EXPECT_THAT(r.err, HasSubstr("--data"));
  r = Run("slice" + teacher + SliceData() + " --fraction=1.5 --out_dir=" + Path("x"));
  EXPECT_THAT(r.err, HasSubstr("[0, 1)"));
  r = Run("export" + teacher + "--format=onnx --out=" + Path("x"));
  EXPECT_THAT(r.err, HasSubstr("gguf or safetensors"));
  r = Run("quantize --checkpoint=" + Path("nope") + " --out_dir=" + Path("x"));
  EXPECT_THAT(r.err, HasSubstr("does not exist"));
}

TEST_F(LmE2ETest, BadInputGetsClearErrors) {
  clitest::Result r = Run("lm train --threads=1 --out_dir=" + Path("x"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("--data is required"));

  r = Run("lm train " + Data() + " --model=d=30,heads=4 --out_dir=" + Path("x"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("heads"));

  r = Run("lm train " + Data() + " --model=d=32,layers=1,heads=2,ffn=64 --init_from=" +
          Path("teacher/model") + " --out_dir=" + Path("x"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("hidden_size"));

  // A truncated shard names the file.
  fs::create_directories(Path("broken"));
  for (const char* f : {"tokenizer.model", "valid.tokens", "corpus.json"}) {
    fs::copy(Path("corpus/") + f, Path("broken/") + f);
  }
  std::string shard = ReadFile(Path("corpus/train.tokens")).value();
  ASSERT_TRUE(
      WriteFileAtomically(Path("broken/train.tokens"), shard.substr(0, shard.size() / 2)).ok());
  r = Run("lm train --data=" + Path("broken") + " --seq_len=32 --threads=1 --out_dir=" + Path("x"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("train.tokens"));

  r = Run("generate --checkpoint=" + Path("nope") + " --threads=1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("config.json"));
}

// Data parallelism for language models, with real processes: two ranks of
// `lm train` under torchrun against a pool of two teacher servers, against
// one process with the same global batch.
TEST_F(LmE2ETest, TwoRanksUnderTorchrunDistillFromAPoolOfTwoTeachers) {
  if (std::system("/usr/bin/python3 -c 'import torch.distributed.run' 2>/dev/null") != 0) {
    GTEST_SKIP() << "Debian's python3-torch (torchrun) is not installed";
  }
  Server a = Serve("dp_pool_a");
  Server b = Serve("dp_pool_b");
  ASSERT_NE(a.process, nullptr);
  ASSERT_NE(b.process, nullptr);
  const std::string pool = a.address + "," + b.address;
  const clitest::Result one = Run(StudentArgs(pool, "dp_one") + " --steps=20");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  absl::StatusOr<int> port = FreeLoopbackPort();
  ASSERT_TRUE(port.ok()) << port.status();
  const std::string torchrun =
      "/usr/bin/python3 -m torch.distributed.run --no_python --nproc_per_node=2 --redirects=2 "
      "--tee=2 --log_dir=" +
      Path("dp_logs") + " --master_port=" + std::to_string(*port) + " " + RETORT_BINARY + " " +
      StudentArgs(pool, "dp_two") + " --steps=20 >" + Path("dp_two.out") + " 2>&1";
  ASSERT_EQ(std::system(torchrun.c_str()), 0) << ReadFile(Path("dp_two.out")).value_or("");
  EXPECT_THAT(ReadFile(Path("dp_two.out")).value_or(""), HasSubstr("2 ranks (c10d gloo)"));
  const nlohmann::json alone = Json(Path("dp_one/result.json"));
  const nlohmann::json two = Json(Path("dp_two/result.json"));
  EXPECT_EQ(two["steps"], 20);
  EXPECT_EQ(two["tokens"], alone["tokens"]);
  // The same global batch: the same model up to float summation order.
  EXPECT_NEAR(two["final_validation"]["loss"].get<double>(),
              alone["final_validation"]["loss"].get<double>(), 1e-3);
  EXPECT_EQ(two["final_validation"]["tokens"], alone["final_validation"]["tokens"]);
  EXPECT_TRUE(PathExists(Path("dp_two/checkpoints/ckpt-000000000020/training-rank1.pt")));
  EXPECT_TRUE(PathExists(Path("dp_two/model/model.safetensors")));
  for (Server* s : {&a, &b}) {
    ASSERT_TRUE(s->process->Signal(SIGTERM).ok());
    EXPECT_TRUE(s->process->Wait(absl::Seconds(60)).ok());
  }
}

// retort launch: a pool of teacher servers for the Llama teacher and two
// ranks of `lm train` distilling from it, all on this machine.
TEST_F(LmE2ETest, LaunchStartsALlamaTeacherPoolAndTwoLmRanks) {
  const clitest::Result launched =
      Run("launch --nproc=2 --launch_teachers=1 --teacher=" + Path("teacher/model") +
          " --launch_dir=" + Path("lm_launch") + " -- lm train " + Data() +
          " --model=d=32,layers=1,heads=2,ffn=64 --steps=12 --top_k=16 --log_every_steps=1" +
          " --out_dir=" + Path("lm_launched"));
  ASSERT_EQ(launched.exit_code, 0) << launched.err;
  EXPECT_THAT(launched.err, HasSubstr("[launch] teacher 0 serving"));
  EXPECT_THAT(launched.err, HasSubstr("2 ranks (c10d gloo)"));
  EXPECT_THAT(launched.err, HasSubstr("[launch] all 2 ranks finished"));
  EXPECT_EQ(Json(Path("lm_launched/result.json"))["steps"], 12);
  EXPECT_GT(
      Json(Path("lm_launched/result.json"))["final_validation"]["teacher_agreement"].get<double>(),
      0.0);
  EXPECT_TRUE(PathExists(Path("lm_launched/checkpoints/ckpt-000000000012/training-rank1.pt")));
}

// `teacher dump` writes a cache on one rank and, under `retort launch`, on
// two sharing the shards, byte for byte the same; `lm train --teacher_cache`
// trains from it and refuses a cache of another temperature.
TEST_F(LmE2ETest, DumpsATeacherCacheOnOneAndTwoRanksAndTrainsFromIt) {
  const std::string dump =
      " --seq_len=32 --threads=1 --temperature=1 --cache_top_k=16 "
      "--cache_shard_sequences=16 --data=" +
      Path("corpus") + " --teacher=" + Path("teacher/model");
  const clitest::Result one = Run("teacher dump" + dump + " --out_dir=" + Path("cache1"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_THAT(one.out, HasSubstr("bytes/token"));
  const clitest::Result two = Run("launch --nproc=2 --launch_dir=" + Path("cache_launch") +
                                  " -- teacher dump" + dump + " --out_dir=" + Path("cache2"));
  ASSERT_EQ(two.exit_code, 0) << two.err;
  const nlohmann::json manifest = Json(Path("cache1/manifest.json"));
  ASSERT_GE(manifest["shards"].size(), 3u);
  EXPECT_EQ(manifest.dump(), Json(Path("cache2/manifest.json")).dump());
  for (const auto& shard : manifest["shards"]) {
    const std::string file = shard["file"].get<std::string>();
    EXPECT_EQ(ReadFile(Path("cache1/" + file)).value_or("a"),
              ReadFile(Path("cache2/" + file)).value_or("b"))
        << file;
  }
  // A second dump finds everything there.
  const clitest::Result again = Run("teacher dump" + dump + " --out_dir=" + Path("cache2"));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("0 shards written"));

  const std::string student = "lm train " + Data() +
                              " --model=d=32,layers=1,heads=2,ffn=64 --steps=8 --alpha=0.5 "
                              "--log_every_steps=1 --teacher_cache=" +
                              Path("cache2");
  const clitest::Result trained = Run(student + " --temperature=1 --out_dir=" + Path("from_cache"));
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  EXPECT_EQ(Json(Path("from_cache/result.json"))["steps"], 8);
  const clitest::Result hotter = Run(student + " --temperature=2 --out_dir=" + Path("hot"));
  EXPECT_NE(hotter.exit_code, 0);
  EXPECT_THAT(hotter.err, HasSubstr("temperature"));
}

// Ranks started directly (as srun or a Kubernetes Indexed Job does): SIGTERM
// to both makes them finish the step, checkpoint it and exit 75; a rank
// SIGKILLed makes the other fail with the way out. Either way --resume=auto
// ends bit for bit where an undisturbed run does.
class LmRankTest : public LmE2ETest {
 protected:
  static std::string RankArgs(const std::string& out) {
    return "lm train " + Data() +
           " --model=d=32,layers=1,heads=2,ffn=64 --steps=60 --lr=3e-3 --log_every_steps=1 "
           "--checkpoint_every_steps=10 --dist_timeout=8 --out_dir=" +
           Path(out);
  }
  static std::vector<std::unique_ptr<Subprocess>> StartRanks(const std::string& out,
                                                             const std::string& extra = "") {
    return clitest::StartRanks(RETORT_BINARY, RankArgs(out) + " " + extra, *dir_, out);
  }
  static int64_t LoggedStep(const std::string& out) {
    return clitest::LoggedStep(Path(out + "/metrics.jsonl"));
  }
  static void WaitForStep(const std::string& out, int64_t step, Subprocess& rank0) {
    clitest::WaitForStep(Path(out + "/metrics.jsonl"), step, rank0, Path(out + ".rank0.err"));
  }
  static std::vector<int> WaitAll(std::vector<std::unique_ptr<Subprocess>>& ranks) {
    std::vector<int> exits;
    for (auto& r : ranks) {
      absl::StatusOr<int> exit = r->Wait(absl::Seconds(300));
      EXPECT_TRUE(exit.ok()) << exit.status();
      exits.push_back(exit.value_or(-1));
    }
    return exits;
  }
  static std::string Sha(const std::string& out) {
    return Json(Path(out + "/result.json")).value("parameters_sha256", "(none)");
  }
};

TEST_F(LmRankTest, SigtermCheckpointsAndAKilledRankFailsTheOtherBothResumeBitForBit) {
  std::vector<std::unique_ptr<Subprocess>> reference = StartRanks("rank_reference");
  ASSERT_EQ(WaitAll(reference), (std::vector<int>{0, 0}))
      << ReadFile(Path("rank_reference.rank0.err")).value_or("");

  // Preemption: SIGTERM to every rank mid-interval (checkpoints every 10).
  std::vector<std::unique_ptr<Subprocess>> ranks = StartRanks("rank_term");
  ASSERT_EQ(ranks.size(), 2u);
  WaitForStep("rank_term", 13, *ranks[0]);
  for (auto& r : ranks) ASSERT_TRUE(r->Signal(SIGTERM).ok());
  EXPECT_EQ(WaitAll(ranks), (std::vector<int>{75, 75}));
  const std::string err = ReadFile(Path("rank_term.rank0.err")).value_or("");
  EXPECT_THAT(err, HasSubstr("preempted: train-lm stopped on SIGTERM after step"));
  EXPECT_THAT(err, HasSubstr("continue with --resume=auto"));
  const int64_t stopped = LoggedStep("rank_term");
  // The signal lands after step 13 was logged: the ranks stop after 13 if
  // step 14 had not begun, else after the step they were in.
  EXPECT_GE(stopped, 13);
  EXPECT_LT(stopped, 60);
  EXPECT_TRUE(PathExists(
      Path(absl::StrFormat("rank_term/checkpoints/ckpt-%012d/training-rank1.pt", stopped))))
      << "no checkpoint of the step it stopped at (" << stopped << ")";
  ranks = StartRanks("rank_term", "--resume=auto");
  EXPECT_EQ(WaitAll(ranks), (std::vector<int>{0, 0}))
      << ReadFile(Path("rank_term.rank0.err")).value_or("");
  EXPECT_EQ(Sha("rank_term"), Sha("rank_reference"));

  // A rank killed: the other notices, names itself and says how to restart.
  ranks = StartRanks("rank_kill");
  ASSERT_EQ(ranks.size(), 2u);
  WaitForStep("rank_kill", 25, *ranks[0]);
  ASSERT_TRUE(ranks[1]->Signal(SIGKILL).ok());
  absl::StatusOr<int> exit = ranks[0]->Wait(absl::Seconds(120));
  ASSERT_TRUE(exit.ok()) << "rank 0 hangs after its peer died";
  EXPECT_EQ(*exit, 1);
  const std::string killed = ReadFile(Path("rank_kill.rank0.err")).value_or("");
  EXPECT_THAT(killed, HasSubstr("rank 0 of 2: "));
  EXPECT_THAT(killed, HasSubstr("restart them all with --resume=auto"));
  ranks.clear();
  ranks = StartRanks("rank_kill", "--resume=auto");
  EXPECT_EQ(WaitAll(ranks), (std::vector<int>{0, 0}))
      << ReadFile(Path("rank_kill.rank0.err")).value_or("");
  EXPECT_EQ(Sha("rank_kill"), Sha("rank_reference"));
}

// On-policy distillation on two ranks from a pool of two teachers: a rank
// SIGKILLed, then a teacher SIGKILLed while the resumed run goes on; the run
// ends bit for bit where an undisturbed one does (rollout seeds and the
// choice of on-policy steps depend only on seed and step; the teachers are
// deterministic). Then eval --prompts scores the student's answers.
TEST_F(LmRankTest, OnPolicyRanksOverAPoolSurviveAKilledRankAndAKilledTeacher) {
  Server a = Serve("op_a");
  Server b = Serve("op_b");
  ASSERT_NE(a.process, nullptr);
  ASSERT_NE(b.process, nullptr);
  const std::string on = "--teachers=" + a.address + "," + b.address +
                         " --top_k=8 --alpha=0.5 --on_policy_fraction=0.5 --prompt_tokens=8 "
                         "--rollout_tokens=8 --on_policy_loss=rkl --on_policy_candidates=4";
  std::vector<std::unique_ptr<Subprocess>> reference = StartRanks("op_reference", on);
  ASSERT_EQ(WaitAll(reference), (std::vector<int>{0, 0}))
      << ReadFile(Path("op_reference.rank0.err")).value_or("");

  std::vector<std::unique_ptr<Subprocess>> ranks = StartRanks("op_kill", on);
  ASSERT_EQ(ranks.size(), 2u);
  WaitForStep("op_kill", 25, *ranks[0]);
  ASSERT_TRUE(ranks[1]->Signal(SIGKILL).ok());
  absl::StatusOr<int> exit = ranks[0]->Wait(absl::Seconds(120));
  ASSERT_TRUE(exit.ok()) << "rank 0 hangs after its peer died";
  EXPECT_EQ(*exit, 1);
  ranks.clear();
  ranks = StartRanks("op_kill", on + " --resume=auto");
  ASSERT_EQ(ranks.size(), 2u);
  WaitForStep("op_kill", 40, *ranks[0]);
  ASSERT_TRUE(a.process->Signal(SIGKILL).ok());  // the pool goes on with b
  EXPECT_EQ(WaitAll(ranks), (std::vector<int>{0, 0}))
      << ReadFile(Path("op_kill.rank0.err")).value_or("");
  EXPECT_EQ(Sha("op_kill"), Sha("op_reference"));

  // The student's answers, and how likely the teacher finds its samples.
  ASSERT_TRUE(WriteFileAtomically(Path("prompts.jsonl"),
                                  "{\"prompt\": \"And God said\", \"answer\": \"unto\"}\n"
                                  "{\"prompt\": \"In the beginning\"}\n")
                  .ok());
  const clitest::Result eval = Run("eval --checkpoint=" + Path("op_reference/model") +
                                   " --prompts=" + Path("prompts.jsonl") +
                                   " --max_new_tokens=6 --threads=1 --teachers=" + b.address +
                                   " --json_out=" + Path("op_eval.json"));
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  const nlohmann::json j = Json(Path("op_eval.json"));
  EXPECT_EQ(j["prompts"], 2);
  EXPECT_EQ(j["answered"], 1);
  EXPECT_TRUE(j.contains("exact_match"));
  EXPECT_GT(j["teacher_nll"].get<double>(), 0.0);
  EXPECT_EQ(j["sampled_tokens"], 12);
  // A prompts file that is not JSON lines is refused naming the line.
  ASSERT_TRUE(WriteFileAtomically(Path("bad_prompts.jsonl"), "{\"prompt\": 3}\n").ok());
  const clitest::Result bad = Run("eval --checkpoint=" + Path("op_reference/model") +
                                  " --prompts=" + Path("bad_prompts.jsonl"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("bad_prompts.jsonl line 1 is not a JSON object"));
  ASSERT_TRUE(b.process->Signal(SIGTERM).ok());
  EXPECT_TRUE(b.process->Wait(absl::Seconds(60)).ok());
}

}  // namespace
}  // namespace retort
