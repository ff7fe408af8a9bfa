// The SentencePiece module: the only translation unit that includes
// SentencePiece's headers. It must include no abseil header (see
// sentencepiece_backend.h) and must not write to iostreams.
#include "data/sentencepiece_backend.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <exception>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sentencepiece::logging {
// Exported by libsentencepiece; declared in its uninstalled common.h.
void SetMinLogLevel(int v);
}  // namespace sentencepiece::logging

namespace {

// SentencePiece logs when the level is at least this: 3 keeps all but FATAL
// quiet (FATAL ends the process either way).
constexpr int kQuietLogLevel = 3;

void Report(RetortSpmBytesSink sink, void* context, const std::string& message) {
  if (sink != nullptr) sink(context, message.data(), message.size());
}

// Feeds the caller's sentences to the trainer.
class SourceIterator : public sentencepiece::SentenceIterator {
 public:
  SourceIterator(RetortSpmSentenceSource source, void* context)
      : source_(source), context_(context) {
    Next();
  }
  bool done() const override { return done_; }
  void Next() override {
    const char* data = nullptr;
    size_t size = 0;
    done_ = source_(context_, &data, &size) == 0;
    if (!done_) value_.assign(data, size);
  }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  RetortSpmSentenceSource source_;
  void* context_;
  bool done_ = false;
  std::string value_;
};

int Train(const RetortSpmTrainConfig* config, RetortSpmSentenceSource source, void* source_context,
          RetortSpmBytesSink model, void* model_context, RetortSpmBytesSink error,
          void* error_context) {
  try {
    sentencepiece::logging::SetMinLogLevel(kQuietLogLevel);
    sentencepiece::SetRandomGeneratorSeed(config->seed);
    const std::unordered_map<std::string, std::string> args = {
        {"model_type", config->model_type},
        {"vocab_size", std::to_string(config->vocab_size)},
        {"num_threads", std::to_string(config->num_threads)},
        {"max_sentence_length", std::to_string(config->max_sentence_length)},
        {"character_coverage", "1.0"},
        {"byte_fallback", "true"},
        {"unk_id", "0"},
        {"bos_id", "1"},
        {"eos_id", "2"},
        {"pad_id", "-1"},
        // The caller samples; SentencePiece reads every sentence it is given,
        // in order.
        {"input_sentence_size", "0"},
        {"shuffle_input_sentence", "false"},
        // Text is kept as is, so Decode(Encode(s)) == s for UTF-8 text.
        {"normalization_rule_name", "identity"},
        {"remove_extra_whitespaces", "false"},
        {"minloglevel", std::to_string(kQuietLogLevel)},
    };
    SourceIterator sentences(source, source_context);
    std::string serialized;
    const sentencepiece::util::Status status =
        sentencepiece::SentencePieceTrainer::Train(args, &sentences, &serialized);
    if (!status.ok()) {
      Report(error, error_context, status.ToString());
      return 1;
    }
    model(model_context, serialized.data(), serialized.size());
    return 0;
  } catch (const std::exception& e) {
    Report(error, error_context, std::string("SentencePiece training threw: ") + e.what());
  } catch (...) {
    Report(error, error_context, "SentencePiece training threw an unknown exception");
  }
  return 1;
}

void* Load(const char* model, size_t size, RetortSpmBytesSink error, void* error_context) {
  try {
    sentencepiece::logging::SetMinLogLevel(kQuietLogLevel);
    auto processor = std::make_unique<sentencepiece::SentencePieceProcessor>();
    const sentencepiece::util::Status status =
        processor->LoadFromSerializedProto(std::string_view(model, size));
    if (!status.ok()) {
      Report(error, error_context, status.ToString());
      return nullptr;
    }
    return processor.release();
  } catch (const std::exception& e) {
    Report(error, error_context, std::string("loading threw: ") + e.what());
  } catch (...) {
    Report(error, error_context, "loading threw an unknown exception");
  }
  return nullptr;
}

const sentencepiece::SentencePieceProcessor& Processor(const void* p) {
  return *static_cast<const sentencepiece::SentencePieceProcessor*>(p);
}

void Release(void* processor) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(processor);
}
int32_t VocabSize(const void* p) { return Processor(p).GetPieceSize(); }
int32_t UnkId(const void* p) { return Processor(p).unk_id(); }
int32_t BosId(const void* p) { return Processor(p).bos_id(); }
int32_t EosId(const void* p) { return Processor(p).eos_id(); }

int Encode(const void* p, const char* text, size_t size, RetortSpmIdsSink ids, void* ids_context,
           RetortSpmBytesSink error, void* error_context) {
  try {
    std::vector<int> out;
    const sentencepiece::util::Status status =
        Processor(p).Encode(std::string_view(text, size), &out);
    if (!status.ok()) {
      Report(error, error_context, status.ToString());
      return 1;
    }
    static_assert(sizeof(int) == sizeof(int32_t), "ids are passed as int32_t");
    ids(ids_context, reinterpret_cast<const int32_t*>(out.data()), out.size());
    return 0;
  } catch (const std::exception& e) {
    Report(error, error_context, std::string("encoding threw: ") + e.what());
  } catch (...) {
    Report(error, error_context, "encoding threw an unknown exception");
  }
  return 1;
}

int Decode(const void* p, const int32_t* ids, size_t count, RetortSpmBytesSink text,
           void* text_context, RetortSpmBytesSink error, void* error_context) {
  try {
    const std::vector<int> in(ids, ids + count);
    std::string out;
    const sentencepiece::util::Status status = Processor(p).Decode(in, &out);
    if (!status.ok()) {
      Report(error, error_context, status.ToString());
      return 1;
    }
    text(text_context, out.data(), out.size());
    return 0;
  } catch (const std::exception& e) {
    Report(error, error_context, std::string("decoding threw: ") + e.what());
  } catch (...) {
    Report(error, error_context, "decoding threw an unknown exception");
  }
  return 1;
}

const RetortSpmApi kApi = {
    RETORT_SPM_ABI_VERSION,
    &Train,
    &Load,
    &Release,
    &VocabSize,
    &UnkId,
    &BosId,
    &EosId,
    &Encode,
    &Decode,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const RetortSpmApi* retort_spm_api(void) {
  sentencepiece::logging::SetMinLogLevel(kQuietLogLevel);
  return &kApi;
}
