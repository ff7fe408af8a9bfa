#include "tokenizer/normalizer.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace retort::tokenizer {
namespace {

using ::testing::HasSubstr;

std::string Normalize(const char* config, std::string text) {
  auto normalizer = ParseNormalizer(nlohmann::json::parse(config));
  EXPECT_TRUE(normalizer.ok()) << normalizer.status();
  if (!normalizer.ok()) return "<error>";
  (*normalizer)->Normalize(&text);
  return text;
}

TEST(NormalizerTest, UnicodeForms) {
  EXPECT_EQ(Normalize(R"({"type":"NFC"})", "e\xCC\x81"), "\xC3\xA9");  // é
  EXPECT_EQ(Normalize(R"({"type":"NFD"})", "\xC3\xA9"), "e\xCC\x81");
  EXPECT_EQ(Normalize(R"({"type":"NFKC"})", "\xEF\xAC\x81 x\xC2\xB2"), "fi x2");  // ﬁ x²
  EXPECT_EQ(Normalize(R"({"type":"NFKD"})", "\xE2\x84\xAB"), "A\xCC\x8A");        // Å (angstrom)
}

TEST(NormalizerTest, LowercaseIsPerCharacterWithFullMappings) {
  // Σ lowercases to σ even at a word's end (no final-sigma context, as Rust);
  // İ becomes i + combining dot.
  EXPECT_EQ(Normalize(R"({"type":"Lowercase"})", "AB\xCE\xA3 \xC4\xB0"), "ab\xCF\x83 i\xCC\x87");
}

TEST(NormalizerTest, PrependReplaceStripAndSequence) {
  EXPECT_EQ(Normalize(R"({"type":"Prepend","prepend":"_"})", "ab"), "_ab");
  EXPECT_EQ(Normalize(R"({"type":"Prepend","prepend":"_"})", ""), "");
  EXPECT_EQ(Normalize(R"({"type":"Replace","pattern":{"String":" "},"content":"_"})", "a b  c"),
            "a_b__c");
  EXPECT_EQ(Normalize(R"({"type":"Replace","pattern":{"Regex":"\\s+"},"content":" "})", "a \t\n b"),
            "a b");
  EXPECT_EQ(Normalize(R"({"type":"Strip","strip_left":true,"strip_right":false})", " \t a "), "a ");
  EXPECT_EQ(Normalize(R"({"type":"Strip","strip_left":true,"strip_right":true})",
                      "\xE3\x80\x80 a \xC2\xA0"),
            "a");
  EXPECT_EQ(Normalize(R"({"type":"Sequence","normalizers":[
                {"type":"Prepend","prepend":"\u2581"},
                {"type":"Replace","pattern":{"String":" "},"content":"\u2581"}]})",
                      "Hi there"),
            "\xE2\x96\x81Hi\xE2\x96\x81there");
}

TEST(NormalizerTest, RefusesUnknownTypesAndBadFields) {
  auto bert = ParseNormalizer(nlohmann::json::parse(R"({"type":"BertNormalizer"})"));
  EXPECT_EQ(bert.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(bert.status().message(), HasSubstr("BertNormalizer"));
  auto bad_regex = ParseNormalizer(
      nlohmann::json::parse(R"({"type":"Replace","pattern":{"Regex":"("},"content":""})"));
  EXPECT_EQ(bad_regex.status().code(), absl::StatusCode::kInvalidArgument);
  auto no_content =
      ParseNormalizer(nlohmann::json::parse(R"({"type":"Replace","pattern":{"String":"a"}})"));
  EXPECT_THAT(no_content.status().message(), HasSubstr("'content'"));
  auto no_type = ParseNormalizer(nlohmann::json::parse(R"({"prepend":"x"})"));
  EXPECT_EQ(no_type.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace retort::tokenizer
