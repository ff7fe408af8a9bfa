// The C interface of the SentencePiece module (libretort_sentencepiece.so).
//
// Why a module: Debian's libsentencepiece.so carries its own protobuf-lite
// 3.14 and exports those symbols, while every retort binary already has
// libprotobuf 3.21 (through gRPC and LibTorch). Linked into one process the
// two abort at start-up ("compiled against version 3.14.0 of the Protocol
// Buffer runtime") or crash. So SentencePiece lives in a module that
// data/tokenizer.cc loads on first use with dlopen(RTLD_LOCAL |
// RTLD_DEEPBIND): the module's own protobuf symbols bind to each other and
// stay out of the process's global scope.
//
// The boundary is plain C: nothing owned crosses it. Bytes and ids come
// back through caller-provided sinks, which copy them, so neither side frees
// memory the other allocated. The module's entry points catch every
// exception. It keeps SentencePiece's logging off (its LOG writes to
// std::cerr, which under RTLD_DEEPBIND is the unconstructed libstdc++ copy).
//
// Also: Debian's sentencepiece_processor.h declares `namespace absl { using
// std::string_view; }`, which clashes with the real abseil, so the module's
// translation unit includes no abseil header and no precompiled header.
//
// This header includes no SentencePiece and no abseil header; both sides
// include it.
#ifndef RETORT_DATA_SENTENCEPIECE_BACKEND_H_
#define RETORT_DATA_SENTENCEPIECE_BACKEND_H_

#include <stddef.h>
#include <stdint.h>

extern "C" {

// Bumped whenever RetortSpmApi changes; the loader refuses other versions.
#define RETORT_SPM_ABI_VERSION 1

// The name of the one symbol the module exports.
#define RETORT_SPM_API_SYMBOL "retort_spm_api"

// Receives bytes (a serialized model, decoded text, an error message). The
// data is valid only during the call.
typedef void (*RetortSpmBytesSink)(void* context, const char* data, size_t size);
// Receives token ids, valid only during the call.
typedef void (*RetortSpmIdsSink)(void* context, const int32_t* ids, size_t count);
// Sets *data and *size to the next training sentence and returns 1, or
// returns 0 when there are no more. The sentence must stay valid until the
// next call.
typedef int (*RetortSpmSentenceSource)(void* context, const char** data, size_t* size);

struct RetortSpmTrainConfig {
  int32_t vocab_size;
  const char* model_type;  // "bpe" or "unigram"
  int32_t num_threads;
  uint32_t seed;                // SentencePiece's random seed; not 0xFFFFFFFF
  int32_t max_sentence_length;  // bytes; longer training sentences are skipped
};

// Every function that can fail returns 0 on success, or nonzero after
// passing one message to `error`.
struct RetortSpmApi {
  uint32_t abi_version;  // RETORT_SPM_ABI_VERSION

  // Trains on the sentences `source` yields and passes the serialized model
  // (the bytes of a .model file) to `model`. Deterministic for the same
  // sentences and config. Special ids: <unk> 0, <s> 1, </s> 2, no <pad>;
  // byte fallback on; identity normalization, whitespace kept as is.
  int (*train)(const RetortSpmTrainConfig* config, RetortSpmSentenceSource source,
               void* source_context, RetortSpmBytesSink model, void* model_context,
               RetortSpmBytesSink error, void* error_context);

  // A processor for a serialized model, or null after a message to `error`.
  // Release it with `release`. A processor is safe to use from several
  // threads at once.
  void* (*load)(const char* model, size_t size, RetortSpmBytesSink error, void* error_context);
  void (*release)(void* processor);

  int32_t (*vocab_size)(const void* processor);
  int32_t (*unk_id)(const void* processor);
  int32_t (*bos_id)(const void* processor);  // -1 when the model has none
  int32_t (*eos_id)(const void* processor);  // -1 when the model has none

  int (*encode)(const void* processor, const char* text, size_t size, RetortSpmIdsSink ids,
                void* ids_context, RetortSpmBytesSink error, void* error_context);
  // Every id must be in [0, vocab_size).
  int (*decode)(const void* processor, const int32_t* ids, size_t count, RetortSpmBytesSink text,
                void* text_context, RetortSpmBytesSink error, void* error_context);
};

typedef const struct RetortSpmApi* (*RetortSpmApiFunction)(void);

}  // extern "C"

#endif  // RETORT_DATA_SENTENCEPIECE_BACKEND_H_
