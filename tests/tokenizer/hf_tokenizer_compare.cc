// Checks retort's HfTokenizer against references written by Hugging Face's
// own tokenizers library (tests/tokenizer/make_references.mjs):
//
//   hf_tokenizer_compare FIXTURE_DIR
//
// For every fixture in FIXTURE_DIR/manifest.json: loads <name>.json, encodes
// every string with and without special tokens and every pair, decodes the
// ids (with and without skip_special_tokens), and compares each result with
// the library's. Prints one summary line per fixture (with encode speed,
// retort one string at a time on this thread vs. the npm library's
// single-threaded encodeBatch, both with a cold word cache) and the first
// mismatches; exits 1
// when anything differs.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tokenizer/hf_tokenizer.h"

namespace {

using retort::tokenizer::HfTokenizer;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string Ids(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? "," : "") + std::to_string(ids[i]);
  return out + "]";
}

std::string Unhex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  return out;
}

// JSON-escaped, shortened for the report.
std::string Show(const std::string& text) {
  std::string dumped =
      nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (dumped.size() > 160) dumped = dumped.substr(0, 160) + "...";
  return dumped;
}

struct Report {
  int mismatches = 0;
  int shown = 0;
  void Fail(const std::string& fixture, const std::string& what, const std::string& text,
            const std::string& expected, const std::string& got) {
    ++mismatches;
    if (shown++ >= 12) return;
    std::printf("MISMATCH %s %s text=%s\n  hf:     %s\n  retort: %s\n", fixture.c_str(),
                what.c_str(), Show(text).c_str(), expected.c_str(), got.c_str());
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const nlohmann::json manifest = nlohmann::json::parse(ReadFile(dir + "/manifest.json"));
  Report report;
  long total_strings = 0, total_checks = 0;
  for (const nlohmann::json& fixture : manifest) {
    const std::string name = fixture["name"];
    auto loaded = HfTokenizer::Load(dir + "/" + fixture["tokenizer"].get<std::string>());
    if (!loaded.ok()) {
      std::printf("FAIL %s: %s\n", name.c_str(), loaded.status().ToString().c_str());
      ++report.mismatches;
      continue;
    }
    const HfTokenizer& tokenizer = **loaded;
    const nlohmann::json cases =
        nlohmann::json::parse(ReadFile(dir + "/" + fixture["cases"].get<std::string>()));
    const int before = report.mismatches;
    long checks = 0;
    for (const nlohmann::json& c : cases["cases"]) {
      // Invalid UTF-8 comes as the raw bytes; "text" is what the library saw.
      const std::string text =
          c.contains("text_hex") ? Unhex(c["text_hex"]) : c["text"].get<std::string>();
      const std::vector<int32_t> ids = c["ids"], ids_special = c["ids_special"];
      const std::vector<int32_t> got = tokenizer.Encode(text, false);
      const std::vector<int32_t> got_special = tokenizer.Encode(text, true);
      if (got != ids) report.Fail(name, "encode", text, Ids(ids), Ids(got));
      if (got_special != ids_special) {
        report.Fail(name, "encode+special", text, Ids(ids_special), Ids(got_special));
      }
      const struct {
        const char* what;
        const std::vector<int32_t>& ids;
        bool skip;
        const char* key;
      } decodes[] = {{"decode", ids, false, "decoded"},
                     {"decode+special", ids_special, false, "decoded_special"},
                     {"decode+skip", ids_special, true, "decoded_skip"}};
      for (const auto& d : decodes) {
        const std::string expected = c[d.key];
        const std::string decoded = tokenizer.Decode(d.ids, d.skip);
        if (decoded != expected) report.Fail(name, d.what, text, Show(expected), Show(decoded));
      }
      for (const int32_t id : ids_special) {
        if (id >= tokenizer.vocab_size()) {
          report.Fail(name, "vocab_size", text, std::to_string(id),
                      std::to_string(tokenizer.vocab_size()));
        }
      }
      checks += 5;
    }
    for (const nlohmann::json& p : cases["pairs"]) {
      const std::vector<int32_t> expected = p["ids_special"];
      const std::vector<int32_t> got =
          tokenizer.EncodePair(p["first"].get<std::string>(), p["second"].get<std::string>(), true);
      if (got != expected) {
        report.Fail(name, "encode_pair", p["first"].get<std::string>(), Ids(expected), Ids(got));
      }
      ++checks;
    }
    // Encode speed on the corpus lines (a fresh tokenizer: cold word cache).
    auto fresh = HfTokenizer::Load(dir + "/" + fixture["tokenizer"].get<std::string>());
    const size_t lines_start = fixture["corpus_lines_start"];
    size_t bytes = 0;
    const auto started = std::chrono::steady_clock::now();
    for (size_t i = lines_start; i < cases["cases"].size(); ++i) {
      const std::string& text = cases["cases"][i]["text"].get_ref<const std::string&>();
      bytes += text.size();
      (*fresh)->Encode(text, false);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const long strings = static_cast<long>(cases["cases"].size());
    total_strings += strings;
    total_checks += checks;
    std::printf(
        "%-30s %5ld strings, %2zu pairs, %6ld checks: %s  (vocab %d, hf %d; encode %.1f MB/s, "
        "npm %.1f MB/s)\n",
        name.c_str(), strings, cases["pairs"].size(), checks,
        report.mismatches == before ? "all identical" : "MISMATCHES", tokenizer.vocab_size(),
        fixture["vocab_size"].get<int>(), bytes / 1e6 / seconds,
        fixture["npm_encode_mb_per_s"].get<double>());
  }
  std::printf("%zu fixtures, %ld strings, %ld checks, %d mismatches\n", manifest.size(),
              total_strings, total_checks, report.mismatches);
  return report.mismatches == 0 ? 0 : 1;
}
