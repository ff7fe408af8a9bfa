// LoadTextTokenizer: a tokenizer.json or a SentencePiece model chosen by
// content, anything else refused naming the file.
#include "data/text_tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/sha256.h"
#include "data/tokenizer.h"
#include "tests/data/test_files.h"
#include "tests/tokenizer/small_tokenizer_json.h"

namespace retort::data {
namespace {

using ::testing::HasSubstr;
using testing::ScratchDir;
using testing::WritePlain;

TEST(TextTokenizerTest, ChoosesByContentAndRefusesAnythingElse) {
  ScratchDir dir;
  // A tokenizer.json under any name.
  const std::string json = tokenizer::testing::SmallByteFallbackTokenizerJson(400);
  WritePlain(dir.File("vocab.bin"), "\n  " + json);
  absl::StatusOr<std::unique_ptr<TextTokenizer>> hf = LoadTextTokenizer(dir.File("vocab.bin"));
  ASSERT_TRUE(hf.ok()) << hf.status();
  EXPECT_EQ((*hf)->vocab_size(), 400);
  EXPECT_EQ((*hf)->eos_id(), 2);
  EXPECT_EQ((*hf)->sha256(), Sha256Hex("\n  " + json));
  const std::string text = "the hand\tand \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80";
  EXPECT_EQ((*hf)->Decode((*hf)->Encode(text)), text);

  // A SentencePiece model under a name that does not say so.
  WritePlain(dir.File("text.txt"), "the earth was without form, and void\nand darkness\n");
  Tokenizer::TrainOptions train;
  train.text_files = {dir.File("text.txt")};
  train.vocab_size = 280;
  train.output_path = dir.File("spm.bin");
  const absl::Status trained = Tokenizer::Train(train);
  if (!absl::IsUnimplemented(trained)) {
    ASSERT_TRUE(trained.ok()) << trained;
    absl::StatusOr<std::unique_ptr<TextTokenizer>> spm = LoadTextTokenizer(dir.File("spm.bin"));
    ASSERT_TRUE(spm.ok()) << spm.status();
    EXPECT_EQ((*spm)->vocab_size(), 280);
    EXPECT_EQ((*spm)->Decode((*spm)->Encode("and void")), "and void");
  }

  // Text, even text that starts with newlines, is neither.
  for (const std::string& bytes : {std::string("\n\n\nplain text\n"), std::string(""),
                                   std::string("[1, 2, 3]"), std::string("\x0a\x0a\x0a\x0a")}) {
    WritePlain(dir.File("notes.txt"), bytes);
    absl::Status s = LoadTextTokenizer(dir.File("notes.txt")).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(s.message(), HasSubstr("notes.txt"));
    EXPECT_THAT(s.message(), HasSubstr("neither"));
  }
  // A .model name goes to SentencePiece, whose error names the file.
  WritePlain(dir.File("junk.model"), "junk");
  absl::Status junk = LoadTextTokenizer(dir.File("junk.model")).status();
  EXPECT_FALSE(junk.ok());
  EXPECT_THAT(junk.message(), HasSubstr("junk.model"));
  // Malformed JSON is the tokenizer library's error, naming the file.
  WritePlain(dir.File("bad.json"), "{\"version\": ");
  absl::Status bad = LoadTextTokenizer(dir.File("bad.json")).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << bad;
  EXPECT_THAT(bad.message(), HasSubstr("bad.json"));
  EXPECT_EQ(LoadTextTokenizer(dir.File("none.json")).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace retort::data
