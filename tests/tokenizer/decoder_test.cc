#include "tokenizer/decoder.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace retort::tokenizer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::unique_ptr<Decoder> Parse(const char* config) {
  auto decoder = ParseDecoder(nlohmann::json::parse(config));
  EXPECT_TRUE(decoder.ok()) << decoder.status();
  return decoder.ok() ? *std::move(decoder) : nullptr;
}

TEST(DecoderTest, ByteFallbackJoinsBytesIntoCharacters) {
  auto decoder = Parse(R"({"type":"ByteFallback"})");
  EXPECT_THAT(decoder->DecodeChain({"a", "<0xE2>", "<0x96>", "<0x81>", "b"}),
              ElementsAre("a", "\xE2\x96\x81", "b"));
  // An invalid sequence: one U+FFFD per byte.
  EXPECT_THAT(decoder->DecodeChain({"<0xE2>", "<0x96>", "x"}),
              ElementsAre("\xEF\xBF\xBD", "\xEF\xBF\xBD", "x"));
  EXPECT_THAT(decoder->DecodeChain({"<0xZZ>", "<0x41"}), ElementsAre("<0xZZ>", "<0x41"));
}

TEST(DecoderTest, Llama2Chain) {
  auto decoder = Parse(R"({"type":"Sequence","decoders":[
      {"type":"Replace","pattern":{"String":"\u2581"},"content":" "},
      {"type":"ByteFallback"},{"type":"Fuse"},
      {"type":"Strip","content":" ","start":1,"stop":0}]})");
  EXPECT_EQ(decoder->Decode({"\xE2\x96\x81Hello", "\xE2\x96\x81world", "<0x21>"}), "Hello world!");
}

TEST(DecoderTest, MetaspaceDropsTheFirstReplacementUnlessNever) {
  auto first = Parse(R"({"type":"Metaspace","replacement":"\u2581","prepend_scheme":"first"})");
  EXPECT_EQ(first->Decode({"\xE2\x96\x81Hey",
                           "\xE2\x96\x81"
                           "friend"}),
            "Hey friend");
  auto never = Parse(R"({"type":"Metaspace","replacement":"\u2581","prepend_scheme":"never"})");
  EXPECT_EQ(never->Decode({"\xE2\x96\x81Hey",
                           "\xE2\x96\x81"
                           "friend"}),
            " Hey friend");
}

TEST(DecoderTest, ByteLevelMapsCharactersBackToBytes) {
  auto decoder = Parse(R"({"type":"ByteLevel"})");
  // "Ġw" "Ã©" -> " wé"; a token with a character outside the table stays.
  EXPECT_EQ(decoder->Decode({"\xC4\xA0w", "\xC3\x83\xC2\xA9", "\xE4\xBD\xA0"}),
            " w\xC3\xA9\xE4\xBD\xA0");
  // A lone continuation byte becomes U+FFFD.
  EXPECT_EQ(decoder->Decode({"\xC2\xA9"}), "\xEF\xBF\xBD");
}

TEST(DecoderTest, StripAndBpeDecoder) {
  auto strip = Parse(R"({"type":"Strip","content":"x","start":2,"stop":1})");
  EXPECT_THAT(strip->DecodeChain({"xxxaxx", "x", ""}), ElementsAre("xax", "", ""));
  auto bpe = Parse(R"({"type":"BPEDecoder","suffix":"</w>"})");
  EXPECT_EQ(bpe->Decode({"hel", "lo</w>", "world</w>"}), "hello world");
}

TEST(DecoderTest, RefusesUnknownTypes) {
  auto word_piece = ParseDecoder(nlohmann::json::parse(R"({"type":"WordPiece"})"));
  EXPECT_EQ(word_piece.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(word_piece.status().message(), HasSubstr("WordPiece"));
  auto not_object = ParseDecoder(nlohmann::json::parse("[1]"));
  EXPECT_EQ(not_object.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace retort::tokenizer
