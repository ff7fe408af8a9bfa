// Expected pieces come from Hugging Face's tokenizers (npm 0.23.2,
// PreTokenizer.preTokenizeString) on the same inputs.
#include "tokenizer/pre_tokenizer.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tokenizer/regex.h"
#include "tokenizer/split.h"

namespace retort::tokenizer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Pieces(const std::string& config, const std::string& text,
                                bool at_input_start = true) {
  auto pre_tokenizer = ParsePreTokenizer(nlohmann::json::parse(config));
  EXPECT_TRUE(pre_tokenizer.ok()) << pre_tokenizer.status();
  if (!pre_tokenizer.ok()) return {};
  std::vector<PreToken> pieces = {{text, at_input_start, -1}};
  (*pre_tokenizer)->PreTokenize(&pieces);
  std::vector<std::string> out;
  for (const PreToken& p : pieces) out.push_back(p.text);
  return out;
}

std::string SplitString(const char* behavior, bool invert = false) {
  return std::string(R"({"type":"Split","pattern":{"String":"-"},"behavior":")") + behavior +
         R"(","invert":)" + (invert ? "true" : "false") + "}";
}

TEST(PreTokenizerTest, SplitBehaviors) {
  const std::string text = "the-final--countdown";
  EXPECT_THAT(Pieces(SplitString("Removed"), text), ElementsAre("the", "final", "countdown"));
  EXPECT_THAT(Pieces(SplitString("Isolated"), text),
              ElementsAre("the", "-", "final", "-", "-", "countdown"));
  EXPECT_THAT(Pieces(SplitString("MergedWithPrevious"), text),
              ElementsAre("the-", "final-", "-", "countdown"));
  EXPECT_THAT(Pieces(SplitString("MergedWithNext"), text),
              ElementsAre("the", "-final", "-", "-countdown"));
  EXPECT_THAT(Pieces(SplitString("Contiguous"), text),
              ElementsAre("the", "-", "final", "--", "countdown"));
  EXPECT_THAT(
      Pieces(R"({"type":"Split","pattern":{"Regex":"\\d+"},"behavior":"Removed","invert":true})",
             "ab12cd345"),
      ElementsAre("12", "345"));
}

TEST(PreTokenizerTest, Llama3Regex) {
  const std::string config = nlohmann::json{
      {"type", "Split"},
      {"pattern",
       {{"Regex",
         R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
      {"behavior", "Isolated"},
      {"invert", false}}.dump();
  EXPECT_THAT(Pieces(config, "I'M fine, it'S 1234567 ok\n\n  x  "),
              ElementsAre("I", "'M", " fine", ",", " it", "'S", " ", "123", "456", "7", " ok",
                          "\n\n", " ", " x", "  "));
}

TEST(PreTokenizerTest, ByteLevel) {
  EXPECT_THAT(Pieces(R"({"type":"ByteLevel","add_prefix_space":false,"use_regex":true})",
                     "Hello world's  end"),
              ElementsAre("Hello", "\xC4\xA0world", "'s", "\xC4\xA0",
                          "\xC4\xA0"
                          "end"));
  EXPECT_THAT(
      Pieces(R"({"type":"ByteLevel","add_prefix_space":true,"use_regex":true})", "Hello world"),
      ElementsAre("\xC4\xA0Hello", "\xC4\xA0world"));
  // Without the regex one piece, every byte spelled: é is C3 A9 -> Ã ©.
  EXPECT_THAT(
      Pieces(R"({"type":"ByteLevel","add_prefix_space":false,"use_regex":false})", "a \xC3\xA9\n"),
      ElementsAre("a\xC4\xA0\xC3\x83\xC2\xA9\xC4\x8A"));
}

TEST(PreTokenizerTest, MetaspacePrependSchemes) {
  const char* always =
      R"({"type":"Metaspace","replacement":"\u2581","prepend_scheme":"always","split":true})";
  EXPECT_THAT(Pieces(always, "Hey  friend"), ElementsAre("\xE2\x96\x81Hey", "\xE2\x96\x81",
                                                         "\xE2\x96\x81"
                                                         "friend"));
  const char* first =
      R"({"type":"Metaspace","replacement":"\u2581","prepend_scheme":"first","split":false})";
  EXPECT_THAT(Pieces(first, "Hey friend"), ElementsAre("\xE2\x96\x81Hey\xE2\x96\x81"
                                                       "friend"));
  // Not at the start of the input (after an added token): nothing prepended.
  EXPECT_THAT(Pieces(first, "Hey friend", /*at_input_start=*/false), ElementsAre("Hey\xE2\x96\x81"
                                                                                 "friend"));
  const char* never =
      R"({"type":"Metaspace","replacement":"\u2581","prepend_scheme":"never","split":false})";
  EXPECT_THAT(Pieces(never, "Hey friend"), ElementsAre("Hey\xE2\x96\x81"
                                                       "friend"));
  // Legacy add_prefix_space=false means never.
  EXPECT_THAT(Pieces(R"({"type":"Metaspace","replacement":"_","add_prefix_space":false})", "a b"),
              ElementsAre("a", "_b"));
}

TEST(PreTokenizerTest, CharacterClassSplitters) {
  EXPECT_THAT(Pieces(R"({"type":"Digits","individual_digits":false})", "a123b45"),
              ElementsAre("a", "123", "b", "45"));
  EXPECT_THAT(Pieces(R"({"type":"Digits","individual_digits":true})", "a123b"),
              ElementsAre("a", "1", "2", "3", "b"));
  EXPECT_THAT(Pieces(R"({"type":"Whitespace"})", "Hey, friend!! \xC3\xA9_x  y"),
              ElementsAre("Hey", ",", "friend", "!!", "\xC3\xA9_x", "y"));
  EXPECT_THAT(Pieces(R"({"type":"WhitespaceSplit"})", " Hey, friend!\t x "),
              ElementsAre("Hey,", "friend!", "x"));
  EXPECT_THAT(Pieces(R"({"type":"Punctuation","behavior":"Isolated"})", "Hey, friend!?"),
              ElementsAre("Hey", ",", " friend", "!", "?"));
  EXPECT_THAT(Pieces(R"({"type":"Sequence","pretokenizers":[{"type":"WhitespaceSplit"},
                       {"type":"Digits","individual_digits":true}]})",
                     "ab12 c"),
              ElementsAre("ab", "1", "2", "c"));
}

TEST(PreTokenizerTest, AddedTokenPiecesPassThrough) {
  auto pre_tokenizer = ParsePreTokenizer(nlohmann::json::parse(R"({"type":"WhitespaceSplit"})"));
  ASSERT_TRUE(pre_tokenizer.ok());
  std::vector<PreToken> pieces = {{"a b", true, -1}, {"<s> x", false, 7}};
  (*pre_tokenizer)->PreTokenize(&pieces);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[2].text, "<s> x");
  EXPECT_EQ(pieces[2].added_token_id, 7);
}

TEST(PreTokenizerTest, RefusesUnknownTypesAndBadFields) {
  auto bert = ParsePreTokenizer(nlohmann::json::parse(R"({"type":"BertPreTokenizer"})"));
  EXPECT_EQ(bert.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(bert.status().message(), HasSubstr("BertPreTokenizer"));
  auto behavior = ParsePreTokenizer(nlohmann::json::parse(
      R"({"type":"Split","pattern":{"String":"-"},"behavior":"Sideways","invert":false})"));
  EXPECT_THAT(behavior.status().message(), HasSubstr("Sideways"));
  auto regex = ParsePreTokenizer(nlohmann::json::parse(
      R"({"type":"Split","pattern":{"Regex":"[a-"},"behavior":"Isolated","invert":false})"));
  EXPECT_EQ(regex.status().code(), absl::StatusCode::kInvalidArgument);
  auto replacement =
      ParsePreTokenizer(nlohmann::json::parse(R"({"type":"Metaspace","replacement":"ab"})"));
  EXPECT_THAT(replacement.status().message(), HasSubstr("one character"));
}

TEST(RegexTest, MatchesCoverTheText) {
  auto regex = Regex::Compile("\\p{N}+");
  ASSERT_TRUE(regex.ok());
  const std::vector<Match> matches = (*regex)->FindMatches(
      "a12\xF0\x9F\x98\x80"
      "3");
  ASSERT_EQ(matches.size(), 4u);
  EXPECT_EQ(matches[1].start, 1u);
  EXPECT_EQ(matches[1].end, 3u);
  EXPECT_TRUE(matches[1].is_match);
  EXPECT_FALSE(matches[2].is_match);  // the emoji (4 bytes, 2 UTF-16 units)
  EXPECT_EQ(matches[3].start, 7u);
  EXPECT_EQ(matches[3].end, 8u);
}

}  // namespace
}  // namespace retort::tokenizer
