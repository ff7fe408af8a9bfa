#include "data/tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/sha256.h"
#include "tests/data/test_files.h"

namespace retort::data {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ScratchDir;
using testing::WritePlain;

// A few hundred lines of lowercase words: a small alphabet, so a vocabulary
// of 300 fits (259 reserved ids + about 30 characters + some merges).
std::string SmallText(int lines) {
  static const char* kWords[] = {"the",   "quick",  "brown", "fox",   "jumps", "over",   "lazy",
                                 "dog",   "and",    "runs",  "away",  "from",  "hunter", "in",
                                 "green", "forest", "light", "water", "river", "stone"};
  constexpr int kNumWords = sizeof(kWords) / sizeof(kWords[0]);
  std::string text;
  uint32_t x = 12345;
  for (int i = 0; i < lines; ++i) {
    const int n = 4 + i % 7;
    for (int j = 0; j < n; ++j) {
      x = x * 1103515245u + 12345u;
      if (j > 0) text += ' ';
      text += kWords[(x >> 16) % kNumWords];
    }
    text += i % 3 == 0 ? ".\n" : ",\n";
    if (i % 50 == 0) text += "\n";  // empty lines are skipped
  }
  return text;
}

class TokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    text_path_ = dir_.File("text.txt");
    WritePlain(text_path_, SmallText(300));
  }

  Tokenizer::TrainOptions Options(const std::string& output_name, int vocab_size = 300) {
    Tokenizer::TrainOptions o;
    o.text_files = {text_path_};
    o.vocab_size = vocab_size;
    o.output_path = dir_.File(output_name);
    return o;
  }

  // Trains, skipping the test in builds without SentencePiece.
  std::unique_ptr<Tokenizer> TrainAndLoad(const Tokenizer::TrainOptions& o) {
    absl::Status trained = Tokenizer::Train(o);
    if (absl::IsUnimplemented(trained)) return nullptr;
    EXPECT_TRUE(trained.ok()) << trained;
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::Load(o.output_path);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(*t) : nullptr;
  }

  ScratchDir dir_;
  std::string text_path_;
};

#define SKIP_IF_UNAVAILABLE(tokenizer) \
  if ((tokenizer) == nullptr) GTEST_SKIP() << "no SentencePiece in this build"

TEST_F(TokenizerTest, TrainsAndLoads) {
  const Tokenizer::TrainOptions o = Options("a.model");
  std::unique_ptr<Tokenizer> t = TrainAndLoad(o);
  SKIP_IF_UNAVAILABLE(t);
  EXPECT_EQ(t->vocab_size(), 300);
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_EQ(t->path(), o.output_path);
  EXPECT_EQ(t->sha256(), *FileSha256Hex(o.output_path));
  EXPECT_EQ(t->sha256().size(), 64u);
  // Exactly the one file, no .vocab or temporary left beside it.
  EXPECT_FALSE(PathExists(dir_.File("a.vocab")));
  // Learned pieces: a common word takes fewer tokens than its letters.
  EXPECT_LT(t->Encode("the forest").size(), 10u);
}

TEST_F(TokenizerTest, RoundTripsArbitraryText) {
  std::unique_ptr<Tokenizer> t = TrainAndLoad(Options("a.model"));
  SKIP_IF_UNAVAILABLE(t);
  const std::vector<std::string> texts = {
      "the quick brown fox",
      "",
      " ",
      "  leading, double  spaces and trailing  ",
      "UPPER Case 12345 !@#$%^&*()_+-=[]{};':\"<>?/\\|`~",
      "tab\there and\nnewline",
      "\xC3\x9Cn\xC3\xAF"
      "c\xC3\xB6"
      "d\xC3\xA9 \xE2\x80\x94 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E "
      "\xF0\x9F\x99\x82",  // "Ünïcödé — 日本語 🙂"
  };
  for (const std::string& s : texts) {
    const std::vector<int32_t> ids = t->Encode(s);
    for (int32_t id : ids) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, t->vocab_size());
    }
    EXPECT_EQ(t->Decode(ids), s) << "text: " << s;
  }
  // Characters the training text never had come out as UTF-8 byte pieces
  // (ids 3..258), never as <unk>.
  const std::vector<int32_t> emoji = t->Encode("\xF0\x9F\x99\x82");
  EXPECT_GE(emoji.size(), 4u);
  for (int32_t id : emoji) EXPECT_NE(id, 0);
  int bytes = 0;
  for (int32_t id : emoji) bytes += (id >= 3 && id < 259) ? 1 : 0;
  EXPECT_EQ(bytes, 4);
}

TEST_F(TokenizerTest, DecodeSkipsSpecialsAndMapsBadIdsToUnknown) {
  std::unique_ptr<Tokenizer> t = TrainAndLoad(Options("a.model"));
  SKIP_IF_UNAVAILABLE(t);
  std::vector<int32_t> ids = t->Encode("the dog");
  std::vector<int32_t> wrapped = {t->bos_id()};
  wrapped.insert(wrapped.end(), ids.begin(), ids.end());
  wrapped.push_back(t->eos_id());
  EXPECT_EQ(t->Decode(wrapped), "the dog");
  EXPECT_THAT(t->Decode({-1, 100000}), HasSubstr("\xE2\x81\x87"));  // " ⁇ "
}

TEST_F(TokenizerTest, TrainingIsDeterministic) {
  std::unique_ptr<Tokenizer> a = TrainAndLoad(Options("a.model"));
  SKIP_IF_UNAVAILABLE(a);
  std::unique_ptr<Tokenizer> b = TrainAndLoad(Options("b.model"));
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->sha256(), b->sha256());

  // A sample of the lines, drawn with a seed, is the same sample every time.
  Tokenizer::TrainOptions sampled = Options("c.model");
  sampled.input_sentence_size = 150;
  sampled.seed = 7;
  std::unique_ptr<Tokenizer> c = TrainAndLoad(sampled);
  sampled.output_path = dir_.File("d.model");
  std::unique_ptr<Tokenizer> d = TrainAndLoad(sampled);
  ASSERT_NE(c, nullptr);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(c->sha256(), d->sha256());
}

TEST_F(TokenizerTest, UnigramModelsWork) {
  Tokenizer::TrainOptions o = Options("u.model");
  o.model_type = "unigram";
  std::unique_ptr<Tokenizer> t = TrainAndLoad(o);
  SKIP_IF_UNAVAILABLE(t);
  EXPECT_EQ(t->Decode(t->Encode("green river stone \xC3\xA9")), "green river stone \xC3\xA9");
}

TEST_F(TokenizerTest, RejectsBadOptionsWithClearErrors) {
  Tokenizer::TrainOptions o = Options("x.model", /*vocab_size=*/100);
  absl::Status s = Tokenizer::Train(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("vocab_size 100 is too small"));

  o = Options("x.model");
  o.model_type = "wordpiece";
  EXPECT_THAT(Tokenizer::Train(o).message(), HasSubstr("not one of: bpe, unigram"));

  o = Options("x.model");
  o.text_files = {dir_.File("missing.txt")};
  s = Tokenizer::Train(o);
  if (absl::IsUnimplemented(s)) GTEST_SKIP() << s;
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("missing.txt"));

  o = Options("x.model");
  o.text_files = {dir_.File("blank.txt")};
  WritePlain(o.text_files[0], "\n  \n\t\n");
  s = Tokenizer::Train(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("no non-empty lines"));
  EXPECT_FALSE(PathExists(o.output_path));
}

TEST_F(TokenizerTest, VocabularyOutsideWhatTheTextSupportsIsExplained) {
  // Too small for the characters: 259 reserved + the alphabet > 270.
  Tokenizer::TrainOptions o = Options("x.model", /*vocab_size=*/270);
  absl::Status s = Tokenizer::Train(o);
  if (absl::IsUnimplemented(s)) GTEST_SKIP() << s;
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("this text needs vocab_size >= "));
  EXPECT_THAT(s.message(), Not(HasSubstr("character_coverage")));  // fixed at 1.0 here
  EXPECT_THAT(s.message(), HasSubstr("text.txt"));

  // Too large for the text's merges.
  o = Options("x.model", /*vocab_size=*/50000);
  s = Tokenizer::Train(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("this text supports at most vocab_size="));
  EXPECT_FALSE(PathExists(o.output_path));
}

TEST_F(TokenizerTest, LoadNamesMissingAndCorruptFiles) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::Load(dir_.File("none.model"));
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("none.model"));

  WritePlain(dir_.File("empty.model"), "");
  t = Tokenizer::Load(dir_.File("empty.model"));
  EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(t.status().message(), HasSubstr("empty.model"));

  WritePlain(dir_.File("junk.model"), "this is not a protobuf at all \xff\xfe\x01");
  t = Tokenizer::Load(dir_.File("junk.model"));
  if (absl::IsUnimplemented(t.status())) GTEST_SKIP() << t.status();
  EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss) << t.status();
  EXPECT_THAT(t.status().message(), HasSubstr("junk.model"));
  EXPECT_THAT(t.status().message(), HasSubstr("not a valid SentencePiece model: its bytes"));
}

}  // namespace
}  // namespace retort::data
