#include "data/tokenizer.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/subprocess.h"
#include "data/sentencepiece_backend.h"
#include "data/text_corpus.h"

// Sanitizer runtimes refuse dlopen with RTLD_DEEPBIND.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RETORT_SPM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define RETORT_SPM_SANITIZED 1
#endif
#endif

namespace retort::data {
namespace {

constexpr char kModuleFileName[] = "libretort_sentencepiece.so";
constexpr char kModuleEnv[] = "RETORT_SENTENCEPIECE_MODULE";
// Byte fallback takes 256 ids, and <unk>, <s>, </s> three more.
constexpr int kReservedIds = 259;

absl::StatusOr<const RetortSpmApi*> OpenModule() {
#if defined(RETORT_SPM_SANITIZED)
  return absl::UnimplementedError(
      "SentencePiece is not available in sanitizer builds: its module must be loaded with "
      "RTLD_DEEPBIND, which the sanitizer runtime refuses");
#elif !defined(RETORT_SENTENCEPIECE_MODULE_PATH)
  return absl::UnimplementedError(
      "this build has no SentencePiece: install libsentencepiece-dev and re-run cmake");
#else
  std::vector<std::string> candidates;
  if (const char* env = std::getenv(kModuleEnv); env != nullptr && *env != '\0') {
    candidates.push_back(env);
  } else {
    absl::StatusOr<std::string> exe = CurrentExecutablePath();
    if (exe.ok()) {
      candidates.push_back((std::filesystem::path(*exe).parent_path() / kModuleFileName).string());
    }
    candidates.push_back(RETORT_SENTENCEPIECE_MODULE_PATH);
  }
  std::vector<std::string> tried;
  for (const std::string& path : candidates) {
    if (!PathExists(path)) {
      tried.push_back(absl::StrCat(path, " (not there)"));
      continue;
    }
    // RTLD_LOCAL keeps the module's bundled protobuf out of the global
    // scope; RTLD_DEEPBIND makes the module bind to it rather than to the
    // process's libprotobuf. Never closed.
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (handle == nullptr) {
      const char* error = ::dlerror();
      tried.push_back(absl::StrCat(path, " (", error != nullptr ? error : "dlopen failed", ")"));
      continue;
    }
    auto api_function =
        reinterpret_cast<RetortSpmApiFunction>(::dlsym(handle, RETORT_SPM_API_SYMBOL));
    if (api_function == nullptr) {
      tried.push_back(absl::StrCat(path, " (no ", RETORT_SPM_API_SYMBOL, " symbol)"));
      continue;
    }
    const RetortSpmApi* api = api_function();
    if (api == nullptr || api->abi_version != RETORT_SPM_ABI_VERSION) {
      tried.push_back(absl::StrCat(path, " (interface version ",
                                   api == nullptr ? 0 : api->abi_version, ", this binary needs ",
                                   RETORT_SPM_ABI_VERSION, "; rebuild it)"));
      continue;
    }
    return api;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cannot load the SentencePiece module; tried ", absl::StrJoin(tried, ", "),
                   ". Build the retort_sentencepiece target, put ", kModuleFileName,
                   " next to the retort binary, or set ", kModuleEnv, " to its path"));
#endif
}

absl::StatusOr<const RetortSpmApi*> SentencePieceApi() {
  static const auto* const api = new absl::StatusOr<const RetortSpmApi*>(OpenModule());
  return *api;
}

void AppendBytes(void* context, const char* data, size_t size) {
  static_cast<std::string*>(context)->append(data, size);
}

void AppendIds(void* context, const int32_t* ids, size_t count) {
  auto* out = static_cast<std::vector<int32_t>*>(context);
  out->insert(out->end(), ids, ids + count);
}

struct SentenceCursor {
  const std::vector<std::string>* sentences;
  size_t next = 0;
};

int NextSentence(void* context, const char** data, size_t* size) {
  auto* cursor = static_cast<SentenceCursor*>(context);
  if (cursor->next >= cursor->sentences->size()) return 0;
  const std::string& s = (*cursor->sentences)[cursor->next++];
  *data = s.data();
  *size = s.size();
  return 1;
}

// "Internal: ./src/trainer_interface.cc(580) [cond] Vocabulary size ..." ->
// "Vocabulary size ...".
// Also drops advice about options this class fixes. May return "".
std::string CleanSentencePieceMessage(const std::string& message) {
  std::string cleaned = message;
  const size_t open = cleaned.find(" [");
  const size_t close = open == std::string::npos ? open : cleaned.find("] ", open);
  if (close != std::string::npos) {
    cleaned = cleaned.substr(close + 2);
  } else if (!cleaned.empty() && cleaned.back() == ']') {
    cleaned.clear();  // only the failed condition, no words
  }
  const std::string coverage_advice =
      " or decrease character_coverage with --character_coverage option";
  if (const size_t at = cleaned.find(coverage_advice); at != std::string::npos) {
    cleaned.erase(at, coverage_advice.size());
  }
  return std::string(absl::StripAsciiWhitespace(cleaned));
}

// The integer after the last occurrence of `marker` in `text`, or -1.
int64_t NumberAfter(absl::string_view text, absl::string_view marker) {
  const size_t at = text.rfind(marker);
  if (at == absl::string_view::npos) return -1;
  absl::string_view rest = text.substr(at + marker.size());
  size_t n = 0;
  while (n < rest.size() && rest[n] >= '0' && rest[n] <= '9') ++n;
  int64_t value = -1;
  if (!absl::SimpleAtoi(rest.substr(0, n), &value)) return -1;
  return value;
}

absl::Status TrainingError(const Tokenizer::TrainOptions& options, size_t lines,
                           const std::string& raw) {
  const std::string message = CleanSentencePieceMessage(raw);
  const std::string what = absl::StrCat(
      "cannot train a tokenizer with vocab_size=", options.vocab_size, " on ", lines, " lines of ",
      absl::StrJoin(options.text_files, ", "), ": SentencePiece says: ", message);
  if (absl::StrContains(message, "Vocabulary size is smaller than required_chars")) {
    const int64_t need = NumberAfter(message, " vs ");
    return absl::InvalidArgumentError(
        absl::StrCat(what, " -- this text needs vocab_size >= ",
                     need > 0 ? absl::StrCat(need) : std::string("the second number"),
                     " (256 byte pieces, <unk>, <s>, </s> and one id per distinct character)"));
  }
  if (absl::StrContains(message, "Vocabulary size too high")) {
    const int64_t most = NumberAfter(message, "<= ");
    return absl::InvalidArgumentError(
        absl::StrCat(what, " -- this text supports at most vocab_size=",
                     most > 0 ? absl::StrCat(most) : std::string("the number above"),
                     "; use a smaller vocab_size or more text"));
  }
  return absl::InternalError(what);
}

absl::Status ValidateTrainOptions(const Tokenizer::TrainOptions& o) {
  if (o.text_files.empty()) {
    return absl::InvalidArgumentError("tokenizer training needs at least one text file");
  }
  if (o.output_path.empty()) {
    return absl::InvalidArgumentError("tokenizer training needs an output_path for the .model");
  }
  if (o.model_type != "bpe" && o.model_type != "unigram") {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer model_type '", o.model_type, "' is not one of: bpe, unigram"));
  }
  if (o.vocab_size <= kReservedIds) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocab_size ", o.vocab_size, " is too small: byte fallback and <unk>, <s>, </s> take ",
        kReservedIds, " ids, and every distinct character of the text one more"));
  }
  if (o.num_threads < 1 || o.num_threads > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_threads must be in [1, 128], not ", o.num_threads));
  }
  if (o.input_sentence_size < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input_sentence_size must be >= 0 (0: all lines), not ", o.input_sentence_size));
  }
  if (o.max_sentence_length < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_sentence_length must be >= 1, not ", o.max_sentence_length));
  }
  return absl::OkStatus();
}

// Every line, or an even sample of `limit` lines (reservoir sampling with a
// fixed-algorithm generator, so the same seed picks the same lines anywhere).
absl::StatusOr<std::vector<std::string>> TrainingLines(const Tokenizer::TrainOptions& o) {
  std::vector<std::string> lines;
  std::mt19937_64 rng(o.seed);
  const uint64_t limit = static_cast<uint64_t>(o.input_sentence_size);
  uint64_t seen = 0;
  RETORT_RETURN_IF_ERROR(ForEachTextLine(o.text_files, [&](const std::string& line) {
    if (limit == 0 || seen < limit) {
      lines.push_back(line);
    } else {
      const uint64_t j = rng() % (seen + 1);
      if (j < limit) lines[j] = line;
    }
    ++seen;
    return absl::OkStatus();
  }));
  if (lines.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no text to train a tokenizer on: ", absl::StrJoin(o.text_files, ", "),
                     " hold no non-empty lines"));
  }
  return lines;
}

}  // namespace

absl::Status Tokenizer::Train(const TrainOptions& options) {
  RETORT_RETURN_IF_ERROR(ValidateTrainOptions(options));
  RETORT_ASSIGN_OR_RETURN(const RetortSpmApi* api, SentencePieceApi());
  RETORT_ASSIGN_OR_RETURN(std::vector<std::string> lines, TrainingLines(options));

  RetortSpmTrainConfig config;
  config.vocab_size = options.vocab_size;
  config.model_type = options.model_type.c_str();
  config.num_threads = options.num_threads;
  // 0xFFFFFFFF means "seed from std::random_device" to SentencePiece.
  config.seed = static_cast<uint32_t>(options.seed % 0xFFFFFFFFull);
  config.max_sentence_length = options.max_sentence_length;

  SentenceCursor cursor{&lines};
  std::string model, error;
  if (api->train(&config, &NextSentence, &cursor, &AppendBytes, &model, &AppendBytes, &error) !=
      0) {
    return TrainingError(options, lines.size(), error);
  }
  return WriteFileAtomically(options.output_path, model);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_path) {
  absl::StatusOr<std::string> bytes = ReadFile(model_path);
  if (!bytes.ok()) {
    return absl::Status(bytes.status().code(),
                        absl::StrCat("cannot load tokenizer: ", bytes.status().message()));
  }
  if (bytes->empty()) {
    return absl::DataLossError(
        absl::StrCat("tokenizer ", model_path, " is empty, not a SentencePiece model"));
  }
  absl::StatusOr<const RetortSpmApi*> loaded = SentencePieceApi();
  if (!loaded.ok()) {
    return absl::Status(loaded.status().code(), absl::StrCat("cannot load tokenizer ", model_path,
                                                             ": ", loaded.status().message()));
  }
  const RetortSpmApi* api = *loaded;
  std::string error;
  void* processor = api->load(bytes->data(), bytes->size(), &AppendBytes, &error);
  if (processor == nullptr) {
    const std::string why = CleanSentencePieceMessage(error);
    return absl::DataLossError(
        absl::StrCat("tokenizer ", model_path, " is not a valid SentencePiece model: ",
                     why.empty() ? std::string("its bytes do not parse as a ModelProto") : why));
  }
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->api_ = api;
  t->processor_ = processor;
  t->vocab_size_ = api->vocab_size(processor);
  t->unk_id_ = api->unk_id(processor);
  t->bos_id_ = api->bos_id(processor);
  t->eos_id_ = api->eos_id(processor);
  t->sha256_ = Sha256Hex(*bytes);
  t->path_ = model_path;
  if (t->vocab_size_ <= 0) {
    return absl::DataLossError(absl::StrCat("tokenizer ", model_path, " has no vocabulary"));
  }
  return t;
}

Tokenizer::~Tokenizer() {
  if (processor_ != nullptr) api_->release(processor_);
}

std::vector<int32_t> Tokenizer::Encode(const std::string& text) const {
  std::vector<int32_t> ids;
  std::string error;
  // SentencePiece encodes any string with a loaded model; on an internal
  // failure (not observed) the result is empty.
  if (api_->encode(processor_, text.data(), text.size(), &AppendIds, &ids, &AppendBytes, &error) !=
      0) {
    ids.clear();
  }
  return ids;
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::vector<int32_t> checked(ids);
  for (int32_t& id : checked) {
    if (id < 0 || id >= vocab_size_) id = unk_id_;
  }
  std::string text, error;
  if (api_->decode(processor_, checked.data(), checked.size(), &AppendBytes, &text, &AppendBytes,
                   &error) != 0) {
    return std::string();
  }
  return text;
}

}  // namespace retort::data
